"""Figure 3: many open galleries polling for live updates against the production-style server.

gunicorn started as `manage.py studio` starts it (DEBUG off, the same flags), on a loopback
port, over a gallery of 10,000 generations. BENCH_READERS (50) logged-in people each keep the
gallery open: they load `/`, then ask `/updates/?since=<cursor>` every GALLERY_POLL_MS, as htmx
does; now and then one reloads the page. Meanwhile a stand-in for the worker changes one card
every few seconds, so some polls answer 200 with a card and move the cursor. The load generator
is Python (httpx, one thread and one keep-alive connection per reader): `wrk` is not installed.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
from common import (
    ROOT,
    database_kind,
    figure,
    free_port,
    log,
    make_users,
    median,
    migrate,
    percentile,
    seed,
    setup_django,
    wait_for_port,
)

READERS = int(os.environ.get("BENCH_READERS", "50"))
SECONDS = float(os.environ.get("BENCH_READERS_SECONDS", "60"))
GENERATIONS = int(os.environ.get("BENCH_READERS_GENERATIONS", "10000"))
# Each reader reloads the page about once a minute.
RELOAD_PER_TICK = 1 / 30
CHANGE_EVERY = 10.0
CURSOR_RE = re.compile(r'id="live"[^>]*hx-get="/updates/\?since=([^"&]+)')


def sessions(users) -> list[str]:
    """A logged-in session for each user, as the login view would make it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.utils.module_loading import import_string

    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    keys = []
    for user in users:
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        keys.append(session.session_key)
    return keys


class Reader(threading.Thread):
    def __init__(self, base: str, session_key: str, interval: float, stop_at: float, seed_value):
        super().__init__(daemon=True)
        self.base, self.key, self.interval, self.stop_at = base, session_key, interval, stop_at
        self.rng = random.Random(seed_value)
        self.samples: list[tuple[str, int, float]] = []  # (kind, status or 0, seconds)
        self.opening: list[tuple[str, int, float]] = []
        self.resets = 0
        self.failures: list[str] = []

    def get(
        self, client: httpx.Client, kind: str, url: str, headers: dict | None = None
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            try:
                response = client.get(url, headers=headers)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # gunicorn closes an idle keep-alive connection after 2 s (its default), the
                # poll interval: a request can meet the close. A browser sends an idempotent
                # request again on a new connection; so does this reader, once, and counts it.
                self.resets += 1
                response = client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            self.samples.append((kind, 0, time.perf_counter() - started))
            self.failures.append(f"{kind}: {exc!r}")
            return None
        self.samples.append((kind, response.status_code, time.perf_counter() - started))
        if response.status_code not in (200, 204):
            self.failures.append(f"{kind}: HTTP {response.status_code}")
        return response

    def load_page(self, client: httpx.Client) -> str | None:
        response = self.get(client, "page", "/")
        match = CURSOR_RE.search(response.text) if response is not None else None
        return match.group(1) if match else None

    def run(self) -> None:
        headers = {"HX-Request": "true", "HX-Current-URL": self.base + "/"}
        with httpx.Client(
            base_url=self.base, cookies={"sessionid": self.key}, timeout=10.0
        ) as client:
            # Readers opened their pages at different moments over one interval.
            time.sleep(self.rng.uniform(0, self.interval))
            cursor = self.load_page(client)
            # The figures are for open galleries: opening them is counted apart.
            self.opening, self.samples = self.samples, []
            tick = time.monotonic()
            while True:
                tick += self.interval
                pause = tick - time.monotonic()
                if tick >= self.stop_at:
                    return
                if pause > 0:
                    time.sleep(pause)
                if cursor is None or self.rng.random() < RELOAD_PER_TICK:
                    cursor = self.load_page(client)
                    continue
                response = self.get(client, "updates", f"/updates/?since={cursor}", headers)
                if response is not None and response.status_code == 200:
                    match = CURSOR_RE.search(response.text)
                    cursor = match.group(1) if match else cursor


def main() -> None:
    setup_django()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    from generations.models import Generation

    migrate()
    call_command("collectstatic", "--noinput", verbosity=0)
    started = time.perf_counter()
    seed(GENERATIONS, 8)
    users = make_users("reader", READERS)
    keys = sessions(users)
    log("readers", f"seeded {GENERATIONS} and {READERS} sessions in "
        f"{time.perf_counter() - started:.1f}s")  # fmt: skip
    from django.db import connections

    connections.close_all()

    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "lumaweb.settings", "DEBUG": "0"}
    web = [
        sys.executable, "-m", "gunicorn", "lumaweb.wsgi:application",
        "--bind", f"127.0.0.1:{port}",
        "--workers", "2",
        "--threads", "8",
        "--graceful-timeout", "5",
        "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(web, cwd=ROOT, env=env, start_new_session=True)
    try:
        wait_for_port(port, server)
        base = f"http://127.0.0.1:{port}"
        interval = settings.GALLERY_POLL_MS / 1000
        stop_at = time.monotonic() + SECONDS + interval
        readers = [Reader(base, key, interval, stop_at, i) for i, key in enumerate(keys)]
        log("readers", f"{READERS} readers polling every {interval:g}s for {SECONDS:g}s")
        with httpx.Client(base_url=base, cookies={"sessionid": keys[0]}) as warm:
            for _ in range(10):  # both workers' first requests (templates, connections)
                warm.get("/")
        for reader in readers:
            reader.start()
        changes = 0
        recent = list(Generation.objects.order_by("-created_at").values_list("pk", flat=True)[:24])
        while time.monotonic() < stop_at:
            time.sleep(CHANGE_EVERY)
            Generation.objects.filter(pk=random.choice(recent)).update(updated_at=timezone.now())
            changes += 1
        for reader in readers:
            reader.join(15)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)

    samples = [sample for reader in readers for sample in reader.samples]
    failures = [failure for reader in readers for failure in reader.failures]
    for failure in failures[:5]:
        log("readers", f"error: {failure}")
    latencies = [seconds * 1000 for _, _, seconds in samples]
    polls = [seconds * 1000 for kind, _, seconds in samples if kind == "updates"]
    pages = [seconds * 1000 for kind, _, seconds in samples if kind == "page"]
    p99 = percentile(latencies, 99)
    opening = [seconds * 1000 for reader in readers for _, _, seconds in reader.opening]
    conditions = {
        "readers": READERS,
        "seconds": SECONDS,
        "poll_ms": settings.GALLERY_POLL_MS,
        "generations": GENERATIONS,
        "server": "gunicorn 2 workers x 8 threads (as manage.py studio), DEBUG off",
        "load_generator": "python httpx, one thread + keep-alive connection per reader,"
        " a request that meets a closing keep-alive connection sent again once, as browsers do",
        "database": database_kind(),
        "card_changes": changes,
        "keepalive_resets_retried": sum(reader.resets for reader in readers),
    }
    figure(
        "readers_rps",
        round(len(samples) / SECONDS, 1),
        "req/s",
        requests=len(samples),
        polls=len(polls),
        polls_200=sum(1 for kind, status, _ in samples if kind == "updates" and status == 200),
        polls_204=sum(1 for kind, status, _ in samples if kind == "updates" and status == 204),
        page_loads=len(pages),
        **conditions,
    )
    figure("readers_p50_ms", round(percentile(latencies, 50), 2), "ms", **conditions)
    figure(
        "readers_p99_ms",
        round(p99, 2),
        "ms",
        goal="< 100",
        met=p99 < 100,
        updates_p50_ms=round(percentile(polls, 50), 2),
        updates_p99_ms=round(percentile(polls, 99), 2),
        page_p50_ms=round(median(pages), 2) if pages else None,
        page_p99_ms=round(percentile(pages, 99), 2) if pages else None,
        opening_p50_ms=round(median(opening), 2),
        opening_p99_ms=round(percentile(opening, 99), 2),
        note="steady state: the first page load of each reader (all within one interval)"
        " is reported apart as opening_*",
        **conditions,
    )
    figure(
        "readers_errors",
        len(failures),
        "requests",
        goal="0",
        met=not failures,
        **conditions,
    )


if __name__ == "__main__":
    main()
