"""Real, small H.264 videos standing in for Luma's: cheap to make, deterministic, recognisable.

Frames are built with numpy from layers computed once (a background larger than the frame, the
prompt's text, the input images fitted to the frame) and moved per frame, so a 5 s 720p clip
costs well under a second of CPU, most of it in libx264's ultrafast preset.

Every mode is one function of u, the clip's progress in [0, 1]: text-to-video pans the
background and slides the text, image-to-video zooms slowly into the first image, an end frame
cross-fades in over the last part of the clip and is exactly the last frame. A loop runs u
0 -> 1 -> 0 so that the last frame is the first.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FPS = 24
RESOLUTION_HEIGHTS = {"540p": 540, "720p": 720, "1080p": 1080, "4k": 2160}
ASPECT_RATIOS = {
    "16:9": (16, 9),
    "1:1": (1, 1),
    "9:16": (9, 16),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "21:9": (21, 9),
    "9:21": (9, 21),
}
# The end frame fades in over this last part of the clip: long enough to read as a transition,
# short enough that the blend (the costliest per-frame step) stays cheap.
CROSSFADE_PART = 0.4
ZOOM = 0.12


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height): the resolution names the height, the aspect ratio gives the width."""
    height = RESOLUTION_HEIGHTS[resolution]
    ratio_w, ratio_h = ASPECT_RATIOS[aspect_ratio]
    width = max(2, round(height * ratio_w / ratio_h / 2) * 2)
    return width, height


@dataclass(frozen=True)
class Clip:
    """What to render. `prefix` is a video whose frames come first (an extend's parent)."""

    width: int
    height: int
    seconds: float
    prompt: str = ""
    label: str = ""
    start: Image.Image | None = None
    end: Image.Image | None = None
    loop: bool = False
    prefix: Path | None = None


@dataclass(frozen=True)
class Rendered:
    width: int
    height: int
    duration: float
    frames: int


def render(clip: Clip, video_path: Path, thumbnail_path: Path, last_frame_path: Path) -> Rendered:
    """Write the MP4, its first frame and its last frame as JPEG, each atomically."""
    video_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=video_path.parent, prefix=f".{video_path.stem}-", suffix=".mp4"
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        first, last, count = _encode(clip, tmp)
        _write_jpeg(first, thumbnail_path)
        _write_jpeg(last, last_frame_path)
        os.replace(tmp, video_path)
    finally:
        tmp.unlink(missing_ok=True)
    return Rendered(clip.width, clip.height, count / FPS, count)


def first_and_last_frames(video_path: Path) -> tuple[Image.Image, Image.Image]:
    first = last = None
    for frame in _decode(video_path):
        if first is None:
            first = frame
        last = frame
    if first is None or last is None:
        raise ValueError(f"{video_path} has no video frames")
    return Image.fromarray(first), Image.fromarray(last)


def _encode(clip: Clip, path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    first = last = None
    count = 0
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = clip.width
        stream.height = clip.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "26"}
        for array in _frames(clip):
            if first is None:
                first = array.copy()
            last = array
            count += 1
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert first is not None and last is not None
    return first, last, count


def _frames(clip: Clip) -> Iterator[np.ndarray]:
    size = (clip.width, clip.height)
    start = _fit(clip.start, size) if clip.start is not None else None
    if clip.prefix is not None:
        previous = None
        for previous in _decode(clip.prefix):
            if previous.shape[:2] != (clip.height, clip.width):
                previous = np.asarray(Image.fromarray(previous).resize(size, Image.BILINEAR))
            yield previous
        if start is None and previous is not None:
            start = previous
    end = _fit(clip.end, size) if clip.end is not None else None
    base = _zoom_layer(start) if start is not None else _text_layer(clip)
    count = max(2, round(clip.seconds * FPS))
    for i in range(count):
        u = _progress(i, count, clip.loop)
        frame = base(u)
        if end is not None:
            frame = _blend(frame, end, (u - (1 - CROSSFADE_PART)) / CROSSFADE_PART)
        yield frame


def _progress(i: int, count: int, loop: bool) -> float:
    u = i / (count - 1)
    if loop:
        return (1 - math.cos(2 * math.pi * u)) / 2
    return u


def _blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    if weight <= 0:
        return a
    if weight >= 1:
        return b
    w = round(weight * 256)
    mixed = a.astype(np.uint16) * (256 - w)
    mixed += b.astype(np.uint16) * w
    mixed >>= 8
    return mixed.astype(np.uint8)


def _fit(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Scale to cover the frame and crop the middle, as a video of another shape would."""
    image = image.convert("RGB")
    width, height = size
    scale = max(width / image.width, height / image.height)
    scaled = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(scaled, Image.LANCZOS)
    left = (scaled[0] - width) // 2
    top = (scaled[1] - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def _zoom_layer(image: np.ndarray) -> Callable[[float], np.ndarray]:
    """A slow push-in on the image; u=0 is the image itself."""
    height, width = image.shape[:2]
    picture = Image.fromarray(image)

    def layer(u: float) -> np.ndarray:
        if u <= 0:
            return image
        scale = 1 + ZOOM * u
        w, h = width / scale, height / scale
        box = ((width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2)
        return np.asarray(picture.resize((width, height), Image.BILINEAR, box=box))

    return layer


def _text_layer(clip: Clip) -> Callable[[float], np.ndarray]:
    """The prompt sliding over a panning gradient whose colours come from the prompt."""
    width, height = clip.width, clip.height
    digest = hashlib.sha256(f"{clip.prompt}\x00{clip.label}".encode()).digest()
    pad_x, pad_y = max(8, width // 4), max(4, height // 8)
    background = _background(width + pad_x, height + pad_y, digest)
    text_colour, text_alpha = _text_block(clip.prompt or "(no prompt)", width, height)
    label_colour, label_alpha = _label(clip.label, height) if clip.label else (None, None)
    text_h, text_w = text_alpha.shape[:2]
    margin = max(4, width // 20)
    travel = max(0, width - text_w - 2 * margin)

    def layer(u: float) -> np.ndarray:
        x0, y0 = round(u * pad_x), round(u * pad_y)
        frame = background[y0 : y0 + height, x0 : x0 + width].copy()
        x = margin + round(u * travel)
        y = round((height - text_h) / 2 + math.sin(2 * math.pi * u) * height * 0.12)
        y = min(max(0, y), height - text_h)
        _over(frame, text_colour, text_alpha, x, y)
        if label_alpha is not None:
            _over(frame, label_colour, label_alpha, margin, height - label_alpha.shape[0] - margin)
        return frame

    return layer


def _background(width: int, height: int, digest: bytes) -> np.ndarray:
    colours = np.frombuffer(digest[:9], dtype=np.uint8).reshape(3, 3).astype(np.float32)
    colours = 40 + colours * (150 / 255)  # keep it mid-tone so white text reads on it
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    diagonal = (xs + ys) / 2
    stripes = 0.5 + 0.5 * np.sin((xs * 9 + ys * 5 + digest[9] / 255) * 2 * math.pi)
    image = (
        colours[0] * (1 - diagonal)[..., None]
        + colours[1] * diagonal[..., None]
        + (colours[2] - 90) * 0.35 * stripes[..., None]
    )
    return np.clip(image, 0, 255).astype(np.uint8)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: a fixed small bitmap font
        return ImageFont.load_default()


def _text_block(prompt: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    size = max(12, height // 14)
    font = _font(size)
    columns = max(8, int(width * 0.6 / (size * 0.55)))
    lines = textwrap.wrap(" ".join(prompt.split()), columns, max_lines=4, placeholder=" ...")
    return _draw_lines(lines or [""], font, size)


def _label(label: str, height: int) -> tuple[np.ndarray, np.ndarray]:
    size = max(10, height // 30)
    return _draw_lines([label], _font(size), size)


def _draw_lines(lines: list[str], font, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The lines in white with a dark shadow, as (colour, alpha) arrays for compositing."""
    line_height = round(size * 1.25)
    text_w = max(1, max(round(font.getlength(line)) for line in lines))
    shadow = max(1, size // 12)
    canvas = Image.new("RGBA", (text_w + 2 * shadow, line_height * len(lines) + 2 * shadow))
    draw = ImageDraw.Draw(canvas)
    for n, line in enumerate(lines):
        y = n * line_height
        draw.text((2 * shadow, y + 2 * shadow), line, font=font, fill=(0, 0, 0, 170))
        draw.text((0, y), line, font=font, fill=(255, 255, 255, 255))
    array = np.asarray(canvas)
    return array[..., :3].astype(np.uint16), array[..., 3:].astype(np.uint16)


def _over(frame: np.ndarray, colour: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    h = min(alpha.shape[0], frame.shape[0] - y)
    w = min(alpha.shape[1], frame.shape[1] - x)
    if h <= 0 or w <= 0:
        return
    region = frame[y : y + h, x : x + w]
    a = alpha[:h, :w]
    region[...] = ((region * (255 - a) + colour[:h, :w] * a) // 255).astype(np.uint8)


def _decode(path: Path) -> Iterator[np.ndarray]:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def _write_jpeg(array: np.ndarray, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".jpg")
    os.close(fd)
    try:
        Image.fromarray(array).save(tmp, format="JPEG", quality=85)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
