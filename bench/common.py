"""What the benchmark scripts share: paths, ports, output, Django set-up and the seeder.

Each benchmark is its own script, started by bench/run.py with a fresh DATA_DIR (and, when
DATABASE_URL is set, a fresh PostgreSQL database) in its environment. Figures go to stdout as
one JSON object per line; progress goes to stderr.
"""

from __future__ import annotations

import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for path in (str(ROOT), str(BENCH)):
    if path not in sys.path:
        sys.path.insert(0, path)

MANAGE = [sys.executable, str(ROOT / "manage.py")]
PASSWORD = "bench-password-not-secret"


def log(script: str, message: str) -> None:
    print(f"[bench {script} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def figure(name: str, value: float, unit: str, **conditions: Any) -> dict[str, Any]:
    """Print one figure as a JSON line on stdout (what run.py collects)."""
    record = {"name": name, "value": value, "unit": unit, **conditions}
    print(json.dumps(record), flush=True)
    return record


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.args} did not listen on {port}") from None
            time.sleep(0.2)


def manage(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [*MANAGE, *args], env=env or os.environ, cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def database_kind() -> str:
    return "postgresql" if os.environ.get("DATABASE_URL") else "sqlite"


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lumaweb.settings")
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)


# --- the seeder -----------------------------------------------------------------------------

PROMPTS = [
    "A drone shot over a tropical island at dawn",
    "A lighthouse beam sweeping over a stormy sea",
    "A paper boat drifting down a rain-soaked street",
    "Slow motion of ink blooming in water, macro",
    "A fox running through fresh snow in a birch forest",
    "Neon city at night seen from a moving tram",
    "A hot air balloon rising over lavender fields",
    "Time-lapse of clouds rolling over mountain peaks",
]
FAILURES = [
    "Luma could not make this video.",
    "Luma refused this request: Contains blacklisted words",
    "Luma did not finish this video within 30 minutes.",
]


def shared_media() -> tuple[str, str]:
    """One small real video and poster, rendered once, that every completed row points at."""
    from django.conf import settings

    from luma_emulator.render import Clip, frame_size, render

    video, poster = "videos/bench.mp4", "posters/bench.jpg"
    media = Path(settings.MEDIA_ROOT)
    if not (media / video).exists():
        width, height = frame_size("540p", "16:9")
        clip = Clip(width, height, 5, prompt=PROMPTS[0], label="bench")
        last = media / "posters" / "bench-last.jpg"
        last.parent.mkdir(parents=True, exist_ok=True)
        render(clip, media / video, media / poster, last)
    return video, poster


def make_users(prefix: str, count: int, *, staff: bool = False) -> list:
    """`count` users named <prefix><i>, made at once."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    names = [f"{prefix}{i}" for i in range(count)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    password = make_password(PASSWORD)  # hashed once, shared: the hasher's cost is paid once
    User.objects.bulk_create(
        User(username=name, password=password, is_staff=staff)
        for name in names
        if name not in existing
    )
    return list(User.objects.filter(username__in=names).order_by("id"))


def seed(count: int, owners: int = 8, *, seed_value: int = 6) -> int:
    """Grow the gallery to `count` generations (bulk_create in batches): several owners, mixed
    states (mostly completed, some failed, a few in flight, some hidden, titled, starred or
    deleted), created over the past weeks, the newest a few in progress. Returns rows added."""
    from django.db import transaction
    from django.utils import timezone

    from generations.models import Generation, GenerationEvent, Star, State

    have = Generation.objects.count()
    last_id = Generation.objects.order_by("-id").values_list("id", flat=True).first() or 0
    if have >= count:
        return 0
    rng = random.Random(seed_value + have)
    people = make_users("owner", owners)
    video, poster = shared_media()
    now = timezone.now()
    in_flight = [State.WAITING, State.SUBMITTING, State.QUEUED, State.DREAMING, State.STORING]
    rows = []
    # Row i is 3i minutes old: growing 100 to 10,000 adds older rows, so the first page (the
    # newest) shows the same cards at both sizes.
    for i in range(have, count):
        created = now - timedelta(minutes=3 * i + rng.uniform(0, 2), seconds=30)
        if i < len(in_flight):
            state = in_flight[i]
        else:
            state = State.FAILED if rng.random() < 0.1 else State.COMPLETED
        done = state == State.COMPLETED
        rows.append(
            Generation(
                owner=rng.choice(people),
                title=f"Take {i}" if rng.random() < 0.2 else "",
                prompt=f"{rng.choice(PROMPTS)}, take {i}",
                model_name="ray-v2" if rng.random() < 0.85 else "ray-v1",
                duration="5",
                resolution=rng.choice(["540p", "720p", "1080p"]),
                state=state,
                upstream_id=f"bench-{i:06d}" if state != State.WAITING else "",
                failure_reason=rng.choice(FAILURES) if state == State.FAILED else "",
                video=video if done else "",
                poster=poster if done else "",
                hidden=rng.random() < 0.01,
                deleted_at=created + timedelta(minutes=5) if rng.random() < 0.005 else None,
                created_at=created,
                updated_at=created + timedelta(seconds=40),
                submitted_at=created + timedelta(seconds=1) if state != State.WAITING else None,
                completed_at=created + timedelta(seconds=40) if done else None,
            )
        )
    with transaction.atomic():
        Generation.objects.bulk_create(rows, batch_size=500)
        fresh = list(
            Generation.objects.filter(id__gt=last_id)
            .order_by()
            .values_list("id", "state", "created_at")
        )
        events = []
        for pk, state, created in fresh:
            if state in (State.COMPLETED, State.FAILED):
                events.append(
                    GenerationEvent(
                        generation_id=pk,
                        at=created + timedelta(seconds=40),
                        from_state=State.DREAMING,
                        to_state=state,
                        detail="seeded",
                    )
                )
        GenerationEvent.objects.bulk_create(events, batch_size=1000)
        stars = [
            Star(user=rng.choice(people), generation_id=pk)
            for pk, _, _ in fresh
            if rng.random() < 0.05
        ]
        Star.objects.bulk_create(stars, batch_size=1000, ignore_conflicts=True)
    analyze()
    return len(rows)


def analyze() -> None:
    """PostgreSQL plans from table statistics that autovacuum keeps, in time, after a bulk
    insert; the bench takes them now rather than measure plans made for an empty table."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def fresh_database(url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def drop_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
