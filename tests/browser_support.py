"""The real stack for browser tests, shared by every tests/test_browser*.py: one studio
(gunicorn, a django-q2 worker and the built-in emulator, started by `manage.py studio` as
`make run` starts them) and one Chromium for the whole session.

The stack speaks the official dialect, the one with every mode (reverse extend and
interpolate included); the router dialect's form is covered by the server-side tests.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What a test may need to run a management command against the stack.
STACK: dict = {}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "correct-horse-battery"


def chromium_path() -> str | None:
    return (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database_url(url: str) -> str:
    """The browser stack gets its own PostgreSQL database, made new for this run."""
    import psycopg

    name = f"lumaweb_browser_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        message = "Debian's chromium is not installed (make test installs it with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(f"browser tests are required in CI: {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def studio(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("studio")
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DEBUG": "0",
        "LUMA_EMULATOR_DREAM_SECONDS": "4",
        "GALLERY_POLL_MS": "1000",
        "LUMA_POLL_SECONDS": "1",
        "Q_CLUSTER_NAME": f"lumaweb-browser-{os.getpid()}",
        "CACHE_PREFIX": f"lumaweb-browser-{os.getpid()}",
        "ADMIN_PASSWORD": PASSWORD,
        "ADMIN_USERNAME": "boss",
        # Every mode needs the official dialect; no rate limits to wait out in tests.
        "LUMA_API_DIALECT": "official",
        "LUMA_EMULATOR_CREATES_PER_MINUTE": "0",
        "LUMA_EMULATOR_MAX_IN_FLIGHT": "0",
        "LUMA_MAX_CONCURRENT": "20",
    }
    env.pop("LUMA_API_KEY", None)
    if env.get("DATABASE_URL"):
        env["DATABASE_URL"] = fresh_database_url(env["DATABASE_URL"])
    manage = [sys.executable, str(ROOT / "manage.py")]

    def run(*args: str) -> None:
        subprocess.run([*manage, *args], env=env, cwd=ROOT, check=True, capture_output=True)

    run("migrate", "--noinput")
    run("collectstatic", "--noinput")
    run("ensure_admin")
    make_users = (
        "from django.contrib.auth.models import User; "
        f"[User.objects.create_user(n, password='{PASSWORD}') for n in ('alice', 'bob')]"
    )
    run("shell", "-c", make_users)
    STACK.update(env=env, manage=manage)
    log = (data_dir / "studio.log").open("w")
    process = subprocess.Popen(
        [*manage, "studio", "--port", str(port)],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((data_dir / "studio.log").read_text()) from None
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}"
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()


def log_in(browser, base_url: str, username: str):
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    page.goto("/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base_url + "/")
    return page


def manage_stack(*args: str) -> str:
    """Run a management command against the studio's data (seed_gallery, shell)."""
    result = subprocess.run(
        [*STACK["manage"], *args], env=STACK["env"], cwd=ROOT, check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    return result.stdout


def png(colour: tuple[int, int, int], size: tuple[int, int] = (320, 180)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def image_server():
    """Images at http URLs on loopback, for the URL modes (the emulator fetches them)."""
    images = {"/green.png": png((20, 200, 40)), "/blue.png": png((30, 40, 220))}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = images.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/png" if body else "text/plain")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def mean_colour(image_bytes: bytes) -> tuple[float, float, float]:
    from PIL import Image, ImageStat

    with Image.open(io.BytesIO(image_bytes)) as image:
        return tuple(ImageStat.Stat(image.convert("RGB")).mean)


def video_seconds(data: bytes) -> float:
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames / float(stream.average_rate)


def with_dialogs_accepted(page):
    page.on("dialog", lambda dialog: dialog.accept())
    return page
