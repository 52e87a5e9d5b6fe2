"""Checking a copied video, and its poster frame: the still a card shows before it plays."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import av


def make_poster(video: Path, poster: Path, *, at_seconds: float = 0.5, width: int = 640) -> None:
    """Write a JPEG of the frame near `at_seconds` (the very first frame is often a fade-in)."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        image = None
        for frame in container.decode(stream):
            image = frame.to_image()
            if frame.time is not None and frame.time >= at_seconds:
                break
    if image is None:
        raise ValueError(f"{video.name} has no video frames")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width / 2) * 2))
    poster.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=poster.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            image.save(out, format="JPEG", quality=85)
        os.replace(tmp_name, poster)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def verify_video(video: Path) -> float:
    """Check that a copied video is whole: every frame its index promises is in the file.

    A cut-short MP4 with its index up front still opens and shows a first frame; only reading
    it through tells. Returns the duration in seconds; raises ValueError when it is not whole.
    """
    with av.open(str(video)) as container:
        if not container.streams.video:
            raise ValueError(f"{video.name} has no video stream")
        stream = container.streams.video[0]
        promised = stream.frames
        present = sum(1 for packet in container.demux(stream) if packet.size)
        duration = float(container.duration or 0) / av.time_base
    if promised and present < promised:
        raise ValueError(f"{video.name} is incomplete: {present} of {promised} frames")
    if present == 0:
        raise ValueError(f"{video.name} has no frames")
    return duration
