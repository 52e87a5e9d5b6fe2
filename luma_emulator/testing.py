"""Small helpers for tests that drive the emulator: a clock to move, images, a loopback server.

Nothing here is needed to run the emulator; the app's tests may use it too.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import numpy as np
from PIL import Image


class Clock:
    """A clock a test moves by hand: Emulator(..., clock=clock)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def image_bytes(
    colour: tuple[int, int, int], size: tuple[int, int] = (320, 180), fmt: str = "PNG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def data_uri(colour: tuple[int, int, int], size: tuple[int, int] = (320, 180)) -> str:
    encoded = base64.b64encode(image_bytes(colour, size)).decode()
    return f"data:image/png;base64,{encoded}"


def array_data_uri(array: np.ndarray) -> str:
    """An RGB array as a PNG data: URI."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@dataclass
class Probe:
    """What a decoder sees in a video."""

    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    duration: float
    frames: list[np.ndarray]

    @property
    def first(self) -> np.ndarray:
        return self.frames[0]

    @property
    def last(self) -> np.ndarray:
        return self.frames[-1]


def probe(video: bytes) -> Probe:
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        context = stream.codec_context
        return Probe(
            codec=context.name,
            pix_fmt=context.pix_fmt,
            width=context.width,
            height=context.height,
            fps=float(stream.average_rate),
            duration=len(frames) / float(stream.average_rate),
            frames=frames,
        )


def mean_colour(frame: np.ndarray) -> np.ndarray:
    return frame.reshape(-1, 3).mean(axis=0)


@contextmanager
def serve_bytes(routes: dict[str, tuple[int, str, bytes]]) -> Iterator[str]:
    """A loopback HTTP server answering `routes` {path: (status, content type, body)};
    yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = routes.get(self.path, (404, "text/plain", b"no"))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class CallbackReceiver:
    """A loopback server that records POSTed JSON and answers the statuses it is given."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.received: list[dict] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append({"status": status, "body": body})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CallbackReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
