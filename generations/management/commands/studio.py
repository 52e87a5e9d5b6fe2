from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

# Seconds the web process and the worker get to finish what they are doing.
STOP_GRACE_SECONDS = 8


class Command(BaseCommand):
    help = (
        "Serves the studio: the web process (gunicorn) and a django-q2 worker. Ctrl-C stops both."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args, host: str, port: int, web_workers: int, **options) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "lumaweb.settings"}
        web = [
            sys.executable, "-m", "gunicorn", "lumaweb.wsgi:application",
            "--bind", f"{host}:{port}",
            "--workers", str(web_workers),
            "--threads", "8",
            "--graceful-timeout", "5",
            # Longer than the gallery's poll interval, or an idle connection can be closed
            # just as the browser sends its next poll on it.
            "--keep-alive", "10",
            "--log-level", "warning",
        ]  # fmt: skip
        worker = [sys.executable, "-m", "django", "qcluster"]
        # The worker gets its own process group: on stop it is asked first, then the whole
        # group (the cluster's worker processes too) is killed if it does not finish in time.
        # Tasks are written to survive that: claims expire and every step is idempotent.
        processes = [
            subprocess.Popen(web, cwd=settings.BASE_DIR, env=env),
            subprocess.Popen(worker, cwd=settings.BASE_DIR, env=env, start_new_session=True),
        ]
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        if _wait_for_port(host, port, processes):
            mode = (
                f"Luma at {settings.LUMA_BASE_URL}"
                if settings.LUMA_API_KEY
                else "the built-in Luma emulator"
            )
            self.stdout.write(
                self.style.SUCCESS(f"lumaweb is serving http://{host}:{port}/ on {mode}.")
                + f"\nData lives in {settings.DATA_DIR}. "
                "Press Ctrl-C to stop the web process and the worker."
            )
        while not stopping and all(process.poll() is None for process in processes):
            time.sleep(0.3)
        self.stdout.write("Stopping lumaweb...")
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(processes[1].pid, signal.SIGKILL)
        self.stdout.write("lumaweb stopped.")
        if not stopping:
            failed = [
                p.args[2] if p.args[1] == "-m" else p.args[0] for p in processes if p.returncode
            ]
            sys.exit(f"lumaweb stopped because a process exited: {', '.join(failed)}")


def _wait_for_port(host: str, port: int, processes, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False
