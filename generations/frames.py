"""Keyframes a person gives us: uploads checked by decoding them, re-encoded, stored under an
unguessable name; and the last frame of a finished video, for "Use last frame".

Every stored frame is a JPEG at `frames/<32 hex digits>.jpg`: the public `frame` view serves
only such names, so the upstream can fetch them without a login.
"""

from __future__ import annotations

import io
import math
import re
import uuid
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageOps, UnidentifiedImageError

from generations.posters import make_poster

# What a person may upload; checked by decoding, never by the file's name or its claimed type.
ALLOWED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Luma takes at most 4k; a bigger picture is scaled down, a much bigger one is refused (a
# "decompression bomb" is a small file that decodes to billions of pixels).
MAX_PIXELS = 50_000_000
MAX_SIDE = 3840
JPEG_QUALITY = 90
NAME_RE = re.compile(r"[0-9a-f]{32}\.jpg")


class FrameError(ValueError):
    """The upload is not an image we take; the message is for the person."""


def reencode(data: bytes) -> bytes:
    """Decode an uploaded image and write it again as a plain RGB JPEG (no metadata, no
    trailing bytes, upright). Raises FrameError with a message for the person."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise FrameError(f"The image is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            if kind not in ALLOWED_FORMATS:
                raise FrameError("Upload a JPEG, PNG or WebP image.")
            if probe.width * probe.height > MAX_PIXELS:
                raise FrameError("The image has too many pixels.")
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode not in ("RGB", "L"):
                background = Image.new("RGB", image.size, (0, 0, 0))
                rgba = image.convert("RGBA")
                background.paste(rgba, mask=rgba.getchannel("A"))
                image = background
            image = image.convert("RGB")
    except FrameError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise FrameError(
            "This file is not an image we can read: upload a JPEG, PNG or WebP."
        ) from None
    if image.width < 16 or image.height < 16:
        raise FrameError("The image is too small (at least 16 by 16 pixels).")
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def store(jpeg: bytes) -> str:
    """Store a JPEG under a fresh unguessable name; returns the storage name."""
    return default_storage.save(f"frames/{uuid.uuid4().hex}.jpg", ContentFile(jpeg))


def exists(name: str) -> bool:
    """`name` is a stored frame's file name (without `frames/`)."""
    return bool(NAME_RE.fullmatch(name)) and default_storage.exists(f"frames/{name}")


def store_last_frame(video: Path) -> str:
    """Store the last frame of a finished video as a new frame; returns the storage name."""
    name = f"frames/{uuid.uuid4().hex}.jpg"
    # make_poster keeps decoding until `at_seconds`: past the end, that is the last frame.
    make_poster(video, Path(default_storage.path(name)), at_seconds=math.inf, width=MAX_SIDE)
    return name
