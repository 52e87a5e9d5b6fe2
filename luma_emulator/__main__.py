"""python -m luma_emulator --port 9100 [--host 127.0.0.1] [--data-dir var/emulator]"""

from __future__ import annotations

import argparse
import logging
import sys

from luma_emulator import Emulator, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m luma_emulator",
        description="Serve the Luma emulator (configured by LUMA_EMULATOR_* variables).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--data-dir", default="var/emulator", help="default: var/emulator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        emulator = Emulator.from_env(args.data_dir)
    except ValueError as error:
        parser.error(str(error))
    serve(emulator, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
