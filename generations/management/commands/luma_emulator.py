"""python manage.py luma_emulator --port 9100: the Luma emulator as a real HTTP server.

It stands for a foreign service, so it imports nothing of the app: only where its state lives.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from luma_emulator import Emulator, serve


class Command(BaseCommand):
    help = "Serve the Luma emulator (both dialects), configured by LUMA_EMULATOR_* variables."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9100)
        parser.add_argument(
            "--data-dir", type=Path, default=None, help="default: DATA_DIR/emulator"
        )

    def handle(self, *args, host: str, port: int, data_dir: Path | None, **options) -> None:
        data_dir = data_dir or settings.LUMA_EMULATOR_DIR
        try:
            emulator = Emulator.from_env(data_dir)
        except ValueError as error:
            raise CommandError(str(error)) from error
        serve(emulator, host, port)
