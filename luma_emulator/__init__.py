"""A stand-in for Luma's video API, both dialects, that renders real small videos.

It imports nothing from the Django app: it stands for a foreign service. See docs/emulator.md.
"""

from __future__ import annotations

from luma_emulator.app import ConnectionDropped, Emulator
from luma_emulator.server import make_server, serve

__all__ = ["ConnectionDropped", "Emulator", "make_server", "serve"]
