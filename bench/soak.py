"""The soak: many generations through a faulty upstream and a worker killed along the way.

`make soak` runs SOAK_N generations (default 200) through the standalone emulator, with every
kind of fault it knows switched on at realistic rates, on a real qcluster that is killed with
SIGKILL and restarted SOAK_KILLS times (default 3): SOAK_CLUSTERS (default 2) qclusters run side
by side, as on two machines, and each kill takes one down. Its last line is one JSON object:

    {"generations": 200, "completed": ..., "failed": {"<reason>": n}, "lost": 0, "stuck": 0,
     "duplicate_creates": 0, "stored_twice": 0, "seconds": ...}

lost: not finished at the end; stuck: in progress past its deadline; duplicate_creates: upstream
generations created twice for one of ours (counted by the emulator); stored_twice: a video copied
twice. It exits non-zero unless all of them are 0. It uses DATABASE_URL / REDIS_URL when set (a
fresh database is made for it), else SQLite and the ORM broker in a temporary DATA_DIR.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import drop_database, fresh_database

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-soak"
# Realistic rates: a few percent of each fault, every kind switched on.
FAULTS = {
    "endpoints": {
        "*": {"latency": [0.0, 0.05], "errors": {"500": 0.01, "502": 0.01, "503": 0.01}},
        "create": {
            "errors": {"500": 0.03, "502": 0.02, "503": 0.02},
            "rate_limit": 0.03,
            "retry_after": 1,
            "hang": 0.02,
            "hang_seconds": 8,
            "drop": 0.03,
            "malformed": 0.01,
            "latency": [0.0, 0.1],
        },
        "get": {"errors": {"502": 0.02, "503": 0.01}, "malformed": 0.01, "rate_limit": 0.01},
        "tasks": {"errors": {"502": 0.02, "503": 0.01}, "malformed": 0.01, "rate_limit": 0.01},
        "list": {"errors": {"503": 0.02}},
        "download": {"errors": {"503": 0.03}, "malformed": 0.03},
    },
    "generations": {
        "fail": 0.04,
        "fail_reason": "Advanced prompt moderation failed",
        "incomplete": 0.05,
        "stuck": 0.02,
        "forget": 0.02,
        "forget_after": 20,
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> int:
    count = int(os.environ.get("SOAK_N", "200"))
    kills = int(os.environ.get("SOAK_KILLS", "3"))
    clusters = int(os.environ.get("SOAK_CLUSTERS", "2"))
    deadline_seconds = float(os.environ.get("SOAK_SECONDS", "540"))
    seed = int(os.environ.get("SOAK_SEED", "1"))
    dialect = os.environ.get("SOAK_DIALECT", "router")
    rng = random.Random(seed)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="lumaweb-soak-"))
    port = free_port()
    name = f"lumaweb_soak_{os.getpid()}"
    base_db = os.environ.get("DATABASE_URL", "")
    timeout_minutes = 1.5
    env = {
        **os.environ,
        "DATA_DIR": str(work / "data"),
        "LUMA_API_KEY": KEY,
        "LUMA_BASE_URL": f"http://127.0.0.1:{port}"
        + ("/dream-machine/v1" if dialect == "official" else ""),
        "LUMA_API_DIALECT": dialect,
        "LUMA_TIMEOUT_SECONDS": "5",
        "LUMA_TIMEOUT_MINUTES": str(timeout_minutes),
        "LUMA_POLL_SECONDS": "1",
        "Q_CLUSTER_NAME": name,
        "CACHE_PREFIX": name,
        "Q_WORKERS": "2",
        "LUMA_EMULATOR_API_KEY": KEY,
        "LUMA_EMULATOR_DREAM_SECONDS": "6",
        "LUMA_EMULATOR_FAULTS": json.dumps(FAULTS),
        "LUMA_EMULATOR_SEED": str(seed),
        # The account limit stays Luma's (10 in flight); the per-minute one is raised so that
        # a soak of hundreds fits in minutes.
        "LUMA_EMULATOR_CREATES_PER_MINUTE": "600",
        "LOG_LEVEL": "WARNING",
    }
    if base_db:
        env["DATABASE_URL"] = fresh_database(base_db, name)
    manage = [sys.executable, str(ROOT / "manage.py")]

    def django(code: str) -> str:
        result = subprocess.run(
            [*manage, "shell", "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
        )
        if result.returncode:
            raise RuntimeError(result.stderr)
        return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""

    serve = ["-m", "luma_emulator", "--port", str(port), "--data-dir", str(work / "emu")]
    emulator = subprocess.Popen(
        [sys.executable, *serve],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(work / "emulator.log").open("w"),
    )  # fmt: skip
    workers: list[subprocess.Popen] = []
    try:
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
        log(f"{count} generations, {clusters} clusters, {kills} kills, {dialect}, data in {work}")
        django(
            "from django.contrib.auth.models import User\n"
            "from generations.models import Generation\n"
            "from generations import tasks\n"
            "users = [User.objects.create_user(f'soaker{i}') for i in range(4)]\n"
            f"for n in range({count}):\n"
            "    g = Generation.objects.create(owner=users[n % 4], resolution='540p',\n"
            "        duration='5', prompt=f'Soak clip {n}: a paper boat on a river, take {n}')\n"
            "    tasks.enqueue_submit(g)\n"
            "print('ok')"
        )

        def start_worker() -> subprocess.Popen:
            return subprocess.Popen(
                [*manage, "qcluster"], env=env, cwd=ROOT, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=(work / "worker.log").open("a"),
            )  # fmt: skip

        def progress() -> dict:
            return json.loads(
                django(
                    "import json; from django.db.models import Count\n"
                    "from generations.models import Generation\n"
                    "print(json.dumps(dict(Generation.objects.values_list('state')"
                    ".annotate(n=Count('id')).values_list('state', 'n'))))"
                )
            )

        # Two clusters side by side (each with several worker processes), as on two machines.
        workers = [start_worker() for _ in range(clusters)]
        deadline = started + deadline_seconds
        kills_done = 0
        while time.monotonic() < deadline:
            time.sleep(5)
            states = progress()
            finished = states.get("completed", 0) + states.get("failed", 0)
            log(f"{states}")
            if finished >= count:
                break
            # Kill at points spread over the run, wherever the workers are.
            if kills_done < kills and finished >= (kills_done + 1) * count / (kills + 2):
                time.sleep(rng.uniform(0, 3))
                victim = kills_done % clusters
                os.killpg(workers[victim].pid, signal.SIGKILL)
                workers[victim].wait()
                kills_done += 1
                log(f"killed cluster {victim + 1} with SIGKILL ({kills_done}/{kills}): restart")
                workers[victim] = start_worker()
        summary = json.loads(
            django(
                "import json; from collections import Counter\n"
                "from datetime import timedelta\n"
                "from django.db.models import Count\n"
                "from django.utils import timezone\n"
                "from generations.models import ACTIVE, Generation, GenerationEvent\n"
                "rows = Generation.objects.all()\n"
                "failed = Counter(rows.filter(state='failed')"
                ".values_list('failure_reason', flat=True))\n"
                f"overdue = timezone.now() - timedelta(minutes={timeout_minutes} + 1)\n"
                "stuck = rows.filter(state__in=ACTIVE, submitted_at__lt=overdue).count()\n"
                "twice = GenerationEvent.objects.filter(to_state='completed').values('generation')"
                ".annotate(n=Count('id')).filter(n__gt=1).count()\n"
                "print(json.dumps({'completed': rows.filter(state='completed').count(),"
                " 'failed': dict(failed), 'lost': rows.filter(state__in=ACTIVE).count(),"
                " 'stuck': stuck, 'stored_twice': twice}))"
            )
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/stats") as answer:
            stats = json.load(answer)
        result = {
            "generations": count,
            "completed": summary["completed"],
            "failed": summary["failed"],
            "lost": summary["lost"],
            "stuck": summary["stuck"],
            "duplicate_creates": stats["duplicate_creates"],
            "stored_twice": summary["stored_twice"],
            "kills": kills_done,
            "clusters": clusters,
            "upstream_created": stats["created"],
            "faults_injected": sum(stats.get("faults", {}).values()),
            "database": "postgresql" if base_db else "sqlite",
            "broker": "redis" if os.environ.get("REDIS_URL") else "orm",
            "seconds": round(time.monotonic() - started, 1),
        }
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
        emulator.terminate()
        emulator.wait(10)
        if base_db:
            drop_database(base_db, name)
    print(json.dumps(result))
    bad = result["lost"] or result["stuck"] or result["duplicate_creates"] or result["stored_twice"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
