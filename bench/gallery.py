"""Figures 1 and 2: the gallery page and the live-update poll, server side, in-process.

Django's test client through the whole middleware stack (session, user, login required), with
a bench-only URLconf that adds a trivial login-required view: the floor every request pays.
The gallery's first page is measured at 100 generations, then the same database is grown to
10,000 (older rows, so the first page shows the same cards) and measured again.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from urllib.parse import urlencode

from common import (
    database_kind,
    figure,
    log,
    make_users,
    median,
    migrate,
    seed,
    setup_django,
)

RUNS = int(os.environ.get("BENCH_GALLERY_RUNS", "40"))
WARMUP = 5
SMALL, LARGE = 100, 10_000
OWNERS = 8
MAX_GALLERY_QUERIES = 6  # "small": the goal's reading, stated in BENCHMARKS.md


def timed(client, url: str, runs: int = RUNS, **headers: str) -> list[float]:
    for _ in range(WARMUP):
        client.get(url, headers=headers)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        timings.append(time.perf_counter() - started)
        assert response.status_code in (200, 204), (url, response.status_code)
    return timings


def counted(client, url: str, **headers: str):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, headers=headers)
    return response, list(queries.captured_queries)


def explain(sql: str) -> str:
    from django.db import connection

    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ANALYZE "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql)
        return "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())


def main() -> None:
    setup_django()
    from django.core.management import call_command
    from django.test import Client, override_settings
    from django.utils import timezone

    from generations.models import Generation

    migrate()
    call_command("collectstatic", "--noinput", verbosity=0)
    override_settings(ROOT_URLCONF="bench_urls").enable()
    reader = make_users("reader", 1)[0]
    client = Client(SERVER_NAME="localhost")
    client.force_login(reader)
    db = database_kind()
    started = time.perf_counter()
    seed(SMALL, OWNERS)
    log("gallery", f"seeded {SMALL} in {time.perf_counter() - started:.1f}s")

    trivial = "/_bench/trivial/"
    htmx = {"HX-Request": "true"}
    results: dict[str, dict] = {}

    def page(size: int) -> None:
        floor = timed(client, trivial)
        times = timed(client, "/")
        response, queries = counted(client, "/")
        floor += timed(client, trivial)
        results[size] = {
            "median": median(times),
            "floor": median(floor),
            "queries": len(queries),
            "bytes": len(response.content),
            "sql": queries,
        }
        log("gallery", f"{size}: {median(times) * 1000:.1f} ms, {len(queries)} queries")

    page(SMALL)
    _, trivial_queries = counted(client, trivial)

    # Figure 2, at the small size (a 204 does not depend on the gallery's size: see below).
    since = (timezone.now() - timedelta(seconds=2)).isoformat()
    nothing = "/updates/?" + urlencode({"since": since})
    poll_times = timed(client, nothing, **htmx)
    poll_response, poll_queries = counted(client, nothing, **htmx)
    assert poll_response.status_code == 204, poll_response.status_code

    started = time.perf_counter()
    added = seed(LARGE, OWNERS)
    log("gallery", f"seeded {added} more in {time.perf_counter() - started:.1f}s")
    page(LARGE)
    # The 204 again on the large gallery: it must not grow with it.
    poll_times_large = timed(client, nothing, **htmx)

    newest = Generation.objects.filter(state="completed").order_by("-created_at").first()
    since = timezone.now().isoformat()
    time.sleep(0.01)
    Generation.objects.filter(pk=newest.pk).update(updated_at=timezone.now())
    changed = "/updates/?" + urlencode({"since": since})
    changed_times = timed(client, changed, **htmx)
    changed_response, changed_queries = counted(client, changed, **htmx)
    assert changed_response.status_code == 200, changed_response.status_code

    small, large = results[SMALL], results[LARGE]
    floor = median([small["floor"], large["floor"]])
    common = {"database": db, "runs": RUNS, "page_size": 24, "client": "django.test.Client"}
    figure(
        "trivial_view_ms",
        round(floor * 1000, 2),
        "ms",
        queries=len(trivial_queries),
        note="login-required HttpResponse('ok') through the same middleware",
        **common,
    )
    for size in (SMALL, LARGE):
        figure(
            f"gallery_page_{size}_ms",
            round(results[size]["median"] * 1000, 2),
            "ms",
            generations=size,
            owners=OWNERS,
            queries=results[size]["queries"],
            bytes=results[size]["bytes"],
            x_trivial=round(results[size]["median"] / floor, 2),
            **common,
        )
    ratio = large["median"] / small["median"]
    figure(
        "gallery_page_ratio_10k_100",
        round(ratio, 3),
        "x",
        goal="<= 1.2",
        met=ratio <= 1.2,
        **common,
    )
    same = small["queries"] == large["queries"]
    figure(
        "gallery_page_queries",
        large["queries"],
        "queries",
        queries_100=small["queries"],
        queries_10000=large["queries"],
        goal=f"equal at both sizes and <= {MAX_GALLERY_QUERIES}",
        met=same and large["queries"] <= MAX_GALLERY_QUERIES,
        **common,
    )
    poll = median(poll_times)
    figure(
        "updates_204_ms",
        round(poll * 1000, 2),
        "ms",
        queries=len(poll_queries),
        status=poll_response.status_code,
        bytes=len(poll_response.content),
        x_trivial=round(poll / floor, 2),
        ms_at_10000=round(median(poll_times_large) * 1000, 2),
        goal="<= 2 queries, empty 204, <= 1.5 x trivial",
        met=len(poll_queries) <= 2 and not poll_response.content and poll <= 1.5 * floor,
        **common,
    )
    figure(
        "updates_one_changed_ms",
        round(median(changed_times) * 1000, 2),
        "ms",
        queries=len(changed_queries),
        status=changed_response.status_code,
        bytes=len(changed_response.content),
        x_trivial=round(median(changed_times) / floor, 2),
        generations=LARGE,
        **common,
    )
    # For the report: where the large page's time goes.
    slowest = sorted(large["sql"], key=lambda q: float(q["time"]), reverse=True)[:3]
    for query in slowest:
        log("gallery", f"{query['time']}s: {query['sql'][:400]}")
        if query["sql"].startswith("SELECT"):
            log("gallery", "plan:\n" + explain(query["sql"]))


if __name__ == "__main__":
    main()
