"""The whole flow in a real browser against the real stack: gunicorn, a django-q2 worker and
the built-in emulator, started by `manage.py studio` as `make run` starts them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
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


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
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


def test_it_makes_a_video_that_everyone_sees_finish_live(browser, studio):
    from playwright.sync_api import expect

    alice = log_in(browser, studio, "alice")
    bob = log_in(browser, studio, "bob")
    expect(bob.get_by_text("Nothing here yet")).to_be_visible()
    # A marker that a reload would wipe: both pages must keep it to the end.
    for page in (alice, bob):
        page.evaluate("window.__noReload = true")
    video_statuses: list[int] = []
    alice.on("response", lambda r: "/video.mp4" in r.url and video_statuses.append(r.status))

    alice.get_by_label("Prompt", exact=True).fill("A lighthouse beam sweeping over a stormy sea")
    alice.get_by_label("Resolution").select_option("540p")
    alice.get_by_role("button", name="Generate").click()

    card = alice.locator("#gallery .card", has_text="A lighthouse beam sweeping")
    expect(card).to_have_count(1)
    expect(card.locator(".state")).to_have_text(re.compile("Waiting|Submitting|Queued|Dreaming"))
    # The form is ready for the next one.
    expect(alice.get_by_label("Prompt", exact=True)).to_have_value("")
    expect(card.locator(".owner")).to_have_text("alice")

    teammate_card = bob.locator("#gallery .card", has_text="A lighthouse beam sweeping")
    expect(teammate_card).to_have_count(1, timeout=15_000)
    expect(bob.get_by_text("Nothing here yet")).to_be_hidden()

    expect(card.locator(".state")).to_have_text("Completed", timeout=90_000)
    expect(teammate_card.locator(".state")).to_have_text("Completed", timeout=15_000)

    video = card.locator("video")
    expect(video).to_have_attribute("poster", re.compile(r"/poster\.jpg$"))
    # Play it as a person would (this card was replaced live), then seek.
    video.evaluate("v => v.play()")
    alice.wait_for_function("v => v.currentTime > 0.3", arg=video.element_handle(), timeout=20_000)
    duration = video.evaluate("v => v.duration")
    assert 4.5 < duration < 5.5
    seeked = video.evaluate(
        """v => new Promise(resolve => {
            v.addEventListener('seeked', () => resolve(v.currentTime), {once: true});
            v.currentTime = 3.0;
        })"""
    )
    assert abs(seeked - 3.0) < 0.5
    # The teammate's copy of the card plays too.
    teammate_video = teammate_card.locator("video")
    teammate_video.evaluate("v => v.play()")
    bob.wait_for_function("v => v.currentTime > 0.3", arg=teammate_video.element_handle())
    assert 206 in video_statuses
    assert alice.evaluate("window.__noReload") and bob.evaluate("window.__noReload")


def test_it_sends_a_logged_out_gallery_to_the_login_page(browser, studio):
    page = log_in(browser, studio, "bob")
    page.context.clear_cookies()
    # The next live-update poll finds no session: the page goes to the login form, whole.
    page.wait_for_url(re.compile(r"/login/\?next=/$"), timeout=10_000)
    assert page.get_by_label("Username").is_visible()
    assert page.locator("#gallery").count() == 0
