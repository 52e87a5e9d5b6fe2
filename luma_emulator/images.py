"""Input frames, read the way Luma reads them: a public http(s) URL or a data: URI.

Anything that cannot be read as an image is an InputError, which fails the generation with
"Failed to read user input frames" (Luma accepts the create and fails later, it does not 400).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_to_bytes

import httpx
from PIL import Image

MAX_BYTES = 10 * 1024 * 1024
TIMEOUT_SECONDS = 10.0


class InputError(Exception):
    pass


def load_image(url: str, local_file: Callable[[str], Path | None] | None = None) -> Image.Image:
    """The image at `url`. `local_file` maps the emulator's own /files/ URLs to paths, so that a
    client can use a thumbnail it got from us without the emulator calling itself."""
    if not isinstance(url, str) or not url:
        raise InputError("no image URL")
    if url.startswith("data:"):
        data = _data_uri(url)
    elif url.startswith(("http://", "https://")):
        path = local_file(url) if local_file else None
        data = path.read_bytes() if path is not None else _fetch(url)
    else:
        raise InputError(f"unsupported image URL scheme: {url[:40]}")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:
        raise InputError(f"not a readable image: {error}") from error
    return image.convert("RGB")


def _data_uri(url: str) -> bytes:
    header, _, payload = url.partition(",")
    media_type = header[5:].split(";")[0].strip().lower()
    if not media_type.startswith("image/"):
        raise InputError(f"data: URI is {media_type or 'untyped'}, not an image")
    if ";base64" in header.lower():
        try:
            data = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as error:
            raise InputError(f"bad base64 in data: URI: {error}") from error
    else:
        data = unquote_to_bytes(payload)
    if len(data) > MAX_BYTES:
        raise InputError("image larger than 10 MB")
    return data


def _fetch(url: str) -> bytes:
    try:
        with (
            httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise InputError(f"{url} answered {response.status_code}")
            content_type = response.headers.get("content-type", "").lower()
            if not content_type.startswith("image/"):
                raise InputError(f"{url} is {content_type or 'untyped'}, not an image")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_BYTES:
                    raise InputError(f"{url} is larger than 10 MB")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as error:
        raise InputError(f"{url} could not be fetched: {error}") from error
