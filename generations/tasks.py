"""Background work, run by django-q2 workers.

Every task takes a primary key (or nothing), re-reads its rows and claims them with a conditional
UPDATE before doing anything, so running a task twice, or two workers at once, is safe. A worker
killed at any point leaves at most an expired claim behind, which the poller's sweep picks up.

- `submit_generation(pk)`: sends a new generation to Luma (queued on commit by the view).
- `poll_luma()`: the poller. A django-q2 Schedule starts it every minute; it polls the due
  generations every second or so for about a minute under a lease (a second copy exits at once),
  then hands over to a fresh copy of itself while work remains. Each sweep also moves waiting
  generations into free slots, retries submits and stores that are due, recovers the work of
  dead workers and fails what ran past its deadline.
- `store_video(pk)`: copies a finished video into our storage and makes its poster.
- `refresh_generation(pk)`: re-reads one generation at once (a Luma callback said it changed).
"""

from __future__ import annotations

import base64
import logging
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timedelta
from pathlib import Path

import av
from django.conf import settings
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from django_q.tasks import async_task

from generations import luma
from generations.models import IN_FLIGHT, Generation, Lease, State
from generations.posters import make_poster, verify_video

log = logging.getLogger(__name__)

POLLER_LEASE = "poller"
DISPATCH_LEASE = "dispatch"
# How long one poller task runs before handing over (below Q_CLUSTER's timeout).
POLLER_RUN_SECONDS = 58.0
POLLER_LEASE_SECONDS = 20.0
POLL_BATCH = 50
# A submit holds its row a little longer than one request may take; a dead worker's claim
# expires soon after, and the sweep reconciles it.
SUBMIT_CLAIM_SECONDS = settings.LUMA_TIMEOUT_SECONDS + 30
STORE_CLAIM_SECONDS = 300.0
MAX_SUBMIT_ATTEMPTS = 8
MAX_STORE_ATTEMPTS = 5
LOST_AFTER_404S = 3

NO_ANSWER = (
    "Luma did not answer, so this video may or may not have been started. Retry to make it again."
)


def enqueue_submit(generation: Generation) -> None:
    async_task(submit_generation, generation.pk, task_name=f"submit {generation.code}")


def enqueue_store(generation: Generation) -> None:
    async_task(store_video, generation.pk, task_name=f"store {generation.code}")


def enqueue_restore(generation: Generation) -> None:
    async_task(restore_video, generation.pk, task_name=f"restore {generation.code}")


def enqueue_refresh(generation: Generation) -> None:
    async_task(refresh_generation, generation.pk, task_name=f"refresh {generation.code}")


def kick_poller() -> None:
    """Start a poller unless one is running (it sees new work within a second anyway)."""
    if not Lease.is_held(POLLER_LEASE):
        async_task(poll_luma, task_name="poll luma")


def start_polling_after_spawn(**kwargs) -> None:
    """A worker (re)started: make sure a poller runs now, not at the next schedule. Workers
    spawn together, so one kick per cluster start is enough."""
    # The workers of one cluster spawn within a second; a restart soon after must kick again.
    if Lease.acquire("poller-kick", uuid.uuid4().hex, 3):
        async_task(
            poll_luma, wait_for_lease=POLLER_LEASE_SECONDS + 1, task_name="poll luma after start"
        )


def backoff(attempt: int, base: float = 2.0, cap: float = 120.0) -> float:
    """Exponential backoff with full jitter: spreads a crowd of retries out."""
    return random.uniform(base / 2, min(cap, base * 2 ** max(attempt - 1, 0)))


# --- submit ---------------------------------------------------------------------------------


def submit_generation(pk: int) -> str:
    """Send this generation (and whatever else waits its turn) if a slot is free."""
    dispatch()
    generation = Generation.objects.filter(pk=pk).first()
    if generation is None or generation.state != State.SUBMITTING or generation.upstream_id:
        kick_poller()
        waiting = generation is not None and generation.state == State.WAITING
        return "waiting for a slot" if waiting else "nothing to submit"
    result = _claim_and_submit(generation)
    kick_poller()
    return result


def _claim_and_submit(generation: Generation) -> str:
    # A claim still set but expired means a worker died while holding it, perhaps after the
    # request went out: sending again could make a second video. Reconcile instead.
    died_while_sending = generation.claimed_until is not None
    if not generation.claim(SUBMIT_CLAIM_SECONDS):
        return "another worker is submitting it"
    if died_while_sending:
        return _reconcile(generation, "a worker stopped while sending it")
    return _submit(generation)


def dispatch() -> int:
    """Move waiting generations to SUBMITTING while the account has free slots.

    Under a short lease, so two dispatchers cannot both count the same free slot. It only
    changes states; the HTTP calls happen after, outside the lease.
    """
    # Every sweep asks: answer the common "nobody waits" without taking the lease.
    if not Generation.objects.filter(state=State.WAITING).exists():
        return 0
    holder = uuid.uuid4().hex
    if not Lease.acquire(DISPATCH_LEASE, holder, 30):
        return 0
    try:
        free = settings.LUMA_MAX_CONCURRENT - Generation.objects.holding_a_slot().count()
        if free <= 0:
            return 0
        moved = [g for g in Generation.objects.next_in_line(free) if g.mark_submitting()]
    finally:
        Lease.release(DISPATCH_LEASE, holder)
    now = timezone.now()
    Generation.objects.filter(pk__in=[g.pk for g in moved]).update(next_poll_at=now)
    if moved:
        # Everyone still waiting moved up the line: open galleries show the new places.
        Generation.objects.filter(state=State.WAITING).update(updated_at=now)
    return len(moved)


def video_request(generation: Generation, client: luma.LumaClient) -> luma.VideoRequest:
    end_parent = generation.end_parent
    return luma.VideoRequest(
        prompt=generation.prompt,
        model_name=generation.model_name,
        duration=generation.duration,
        resolution=generation.resolution,
        expand_prompt=generation.expand_prompt,
        aspect_ratio=generation.aspect_ratio,
        loop=generation.loop,
        image_url=frame_url(generation.first_frame, client) or generation.image_url,
        image_end_url=frame_url(generation.last_frame, client) or generation.image_end_url,
        end_generation_id=end_parent.upstream_id if end_parent else "",
        callback_url=callback_url(generation),
    )


def frame_url(frame, client: luma.LumaClient) -> str:
    """Where the upstream can read an uploaded frame: the built-in emulator takes the image
    inline; a real Luma fetches it from our public, unguessable frame URL under SITE_URL."""
    if not frame:
        return ""
    if client.in_process:
        data = base64.b64encode(default_storage.open(frame.name).read()).decode()
        return f"data:image/jpeg;base64,{data}"
    if not settings.SITE_URL:
        raise luma.PermanentError("uploaded frames need SITE_URL, so that Luma can fetch them")
    return settings.SITE_URL + reverse("frame", args=[Path(frame.name).name])


def callback_url(generation: Generation) -> str:
    """Only with a public SITE_URL: Luma must be able to reach it."""
    if not settings.SITE_URL:
        return ""
    return settings.SITE_URL + reverse(
        "luma-callback", args=[generation.code, generation.callback_token()]
    )


def _submit(generation: Generation) -> str:
    client = luma.client()
    try:
        request = video_request(generation, client)
        if generation.parent_id and generation.parent and generation.parent.upstream_id:
            upstream = client.extend(generation.parent.upstream_id, request)
        else:
            upstream = client.create(request)
    except luma.TransientError as exc:
        # Certainly not created (refused connection, 429, 5xx): safe to send again later.
        if exc.status == 429:
            # "Busy, wait": no sign of a fault, so it does not use up an attempt. The account
            # can stay full (slots held upstream by generations that never finish), so it is
            # bounded in time instead.
            generation.refund_attempt()
            if generation.sending_for() > timedelta(minutes=settings.LUMA_TIMEOUT_MINUTES):
                generation.mark_failed(
                    f"Luma stayed too busy to take this video for {settings.LUMA_TIMEOUT_MINUTES:g}"
                    " minutes.",
                    detail=exc.message,
                )
                return "gave up"
        elif generation.attempts >= MAX_SUBMIT_ATTEMPTS:
            generation.mark_failed(
                f"Luma was unavailable; gave up after {generation.attempts} tries.",
                detail=exc.message,
            )
            return "gave up"
        delay = exc.retry_after if exc.retry_after is not None else backoff(generation.attempts)
        log.info("submit of %s will be retried in %.1fs: %s", generation.code, delay, exc)
        generation.release(retry_in=delay)
        return "retry later"
    except luma.AmbiguousError as exc:
        return _reconcile(generation, exc.message)
    except luma.PermanentError as exc:
        generation.mark_failed(refusal_reason(exc), detail=f"HTTP {exc.status}: {exc.message}")
        return "refused"
    generation.mark_submitted(upstream)
    return f"submitted as {upstream.id}"


def _reconcile(generation: Generation, why: str) -> str:
    """The create may or may not have reached Luma. Never send it blindly again.

    The official API lists the account's generations: adopt ours if it is there, send again
    if it is certainly not. A router cannot be asked, so the generation fails with a reason
    and a person decides (the card's Retry makes a new one).
    """
    client = luma.client()
    if client.dialect != "official":
        generation.mark_failed(NO_ANSWER, detail=why)
        return "ambiguous"
    try:
        recent = client.list_recent(limit=100)
    except luma.LumaError as exc:
        # Cannot tell yet: keep the claim expired-looking so the sweep asks again later.
        log.info("reconcile of %s postponed: %s", generation.code, exc)
        generation.postpone_reconcile(backoff(generation.attempts))
        return "reconcile later"
    taken = set(Generation.objects.exclude(upstream_id="").values_list("upstream_id", flat=True))
    expected = video_request(generation, client)
    for upstream in recent:
        if upstream.id not in taken and _is_ours(upstream, expected, generation):
            generation.mark_submitted(upstream, detail=f"adopted {upstream.id} after: {why}")
            return f"adopted {upstream.id}"
    if generation.attempts >= MAX_SUBMIT_ATTEMPTS:
        generation.mark_failed(NO_ANSWER, detail=why)
        return "gave up"
    # Certainly not created: sending again makes no duplicate. The sweep does it, each time
    # under a new claim, so the attempts stay counted.
    generation.release(retry_in=backoff(generation.attempts))
    return "not created: will send again"


def _is_ours(upstream: luma.Upstream, expected: luma.VideoRequest, generation: Generation) -> bool:
    request = upstream.raw.get("request") or {}
    created = upstream.raw.get("created_at") or ""
    try:
        created_at = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return False
    model = luma.OFFICIAL_MODELS.get(expected.model_name, expected.model_name)
    return (
        (request.get("prompt") or "") == expected.prompt
        and request.get("model") in (None, model)
        # Clocks differ a little; an older generation with the same prompt is someone else's.
        and created_at >= generation.created_at - timedelta(minutes=10)
    )


def refusal_reason(exc: luma.LumaError) -> str:
    if exc.status in (401, 403):
        return "Luma refused our API key or account (an administrator must check the settings)."
    return f"Luma refused this request: {exc.message}"


# --- poll -----------------------------------------------------------------------------------


def poll_luma(run_seconds: float = POLLER_RUN_SECONDS, wait_for_lease: float = 0) -> str:
    """`wait_for_lease`: when a poller killed with its worker left the lease behind, wait for
    it to expire rather than leave the generations unpolled until the next schedule."""
    holder = uuid.uuid4().hex
    give_up = time.monotonic() + wait_for_lease
    while not Lease.acquire(POLLER_LEASE, holder, POLLER_LEASE_SECONDS):
        if time.monotonic() >= give_up:
            return "another poller holds the lease"
        time.sleep(1.0)
    deadline = time.monotonic() + run_seconds
    sweeps = 0
    try:
        while time.monotonic() < deadline:
            sweep()
            sweeps += 1
            if not Lease.renew(POLLER_LEASE, holder, POLLER_LEASE_SECONDS):
                return f"lost the lease after {sweeps} sweeps"
            time.sleep(_idle_seconds())
    finally:
        Lease.release(POLLER_LEASE, holder)
    # Hand over rather than wait up to a minute for the schedule while work remains.
    if Generation.objects.active().exists():
        kick_poller()
    return f"{sweeps} sweeps"


def _idle_seconds() -> float:
    next_due = (
        Generation.objects.active()
        .exclude(next_poll_at=None)
        .order_by("next_poll_at")
        .values_list("next_poll_at", flat=True)
        .first()
    )
    if next_due is None:
        return 1.0
    return min(1.0, max(0.1, (next_due - timezone.now()).total_seconds()))


def sweep() -> int:
    """One pass over everything due. Returns the number of rows handled."""
    dispatch()
    now = timezone.now()
    handled = _fail_overdue(now)
    due = list(Generation.objects.due(now).filter(state__in=IN_FLIGHT).order_by("next_poll_at"))
    unchanged = []
    for generation, answer in _fetch_all(luma.client(), due):
        if isinstance(answer, luma.Upstream) and answer.state == generation.state:
            unchanged.append(generation)  # the common case: written all at once below
        else:
            _apply(generation, answer)
    Generation.objects.postpone_polls(unchanged)
    # Submits: retries that are due, and those a dead worker left claimed.
    submits = list(
        Generation.objects.filter(state=State.SUBMITTING, upstream_id="")
        .due(now)
        .unclaimed(now)
        .order_by("next_poll_at")[: settings.LUMA_MAX_CONCURRENT]
    )
    for generation in submits:
        _claim_and_submit(generation)
    stores = list(Generation.objects.due(now).filter(state=State.STORING).unclaimed(now))
    for generation in stores:
        # A store task that died left its row here; queue one more (once per minute at most).
        if generation.defer(60):
            enqueue_store(generation)
    return handled + len(due) + len(submits) + len(stores)


def _fail_overdue(now) -> int:
    """Nothing stays in progress forever: past LUMA_TIMEOUT_MINUTES upstream, it fails."""
    limit = now - timedelta(minutes=settings.LUMA_TIMEOUT_MINUTES)
    overdue = Generation.objects.filter(state__in=IN_FLIGHT, submitted_at__lt=limit)
    minutes = f"{settings.LUMA_TIMEOUT_MINUTES:g}"
    return sum(
        generation.mark_failed(f"Luma did not finish this video within {minutes} minutes.")
        for generation in overdue
    )


def _fetch_all(
    client: luma.LumaClient, generations: list[Generation]
) -> Iterator[tuple[Generation, luma.Upstream | luma.LumaError]]:
    """Ask about every generation, all requests of the sweep at once, in batches where the
    dialect allows; yields each answer as its request comes back."""
    by_id = {generation.upstream_id: generation for generation in generations}
    ids = list(by_id)
    size = POLL_BATCH if client.dialect == "router" and client.batch is not False else 1
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]

    def fetch(chunk: list[str]) -> dict[str, luma.Upstream | luma.LumaError]:
        try:
            return client.get_many(chunk)
        except luma.LumaError as exc:
            return dict.fromkeys(chunk, exc)

    with ThreadPoolExecutor(min(len(chunks), settings.LUMA_POLL_CONCURRENCY) or 1) as pool:
        for future in as_completed([pool.submit(fetch, chunk) for chunk in chunks]):
            for upstream_id, answer in future.result().items():
                yield by_id[upstream_id], answer


def _apply(generation: Generation, answer: luma.Upstream | luma.LumaError) -> None:
    if isinstance(answer, luma.NotFound):
        generation.poll_failed()
        if generation.poll_errors >= LOST_AFTER_404S:
            generation.mark_failed(
                "Luma no longer knows this video (it was lost upstream).", detail=answer.message
            )
        return
    if isinstance(answer, luma.LumaError):
        log.info("poll of %s failed: %s", generation.code, answer)
        generation.poll_failed()
        return
    if generation.apply_upstream(answer) and generation.state == State.STORING:
        enqueue_store(generation)


def refresh_generation(pk: int) -> str:
    """Re-read one generation from the upstream now (a callback said it changed)."""
    generation = Generation.objects.filter(pk=pk, state__in=IN_FLIGHT).first()
    if generation is None:
        return "not in flight"
    for polled, answer in _fetch_all(luma.client(), [generation]):
        _apply(polled, answer)
        return polled.state
    return generation.state


# --- store ----------------------------------------------------------------------------------


def store_video(pk: int) -> str:
    generation = Generation.objects.filter(pk=pk, state=State.STORING).first()
    if generation is None:
        return "nothing to store"
    if not generation.claim(STORE_CLAIM_SECONDS):
        return "another worker is storing it"
    try:
        _copy_video(generation)
    except luma.PermanentError as exc:
        generation.mark_failed(
            "The finished video could not be copied into our storage.", detail=exc.message
        )
        return "refused"
    except (luma.LumaError, OSError, ValueError, av.FFmpegError) as exc:
        if generation.attempts >= MAX_STORE_ATTEMPTS:
            generation.mark_failed(
                "The finished video could not be copied into our storage.", detail=str(exc)
            )
            return "gave up"
        log.info("store of %s will be retried: %s", generation.code, exc)
        generation.release(retry_in=backoff(generation.attempts))
        return "retry later"
    generation.mark_completed(*stored_names(generation))
    return "stored"


def stored_names(generation: Generation) -> tuple[str, str]:
    return f"videos/{generation.code}.mp4", f"posters/{generation.code}.jpg"


def _copy_video(generation: Generation) -> None:
    video_name, poster_name = stored_names(generation)
    video_path = Path(default_storage.path(video_name))
    # Downloaded and checked beside the final name, then moved in: a half or corrupt file
    # never takes the place of a good one.
    part = video_path.with_name(f".{video_path.name}.check")
    try:
        luma.client().download(generation.video_url, part, max_bytes=settings.LUMA_MAX_VIDEO_BYTES)
        verify_video(part)
        make_poster(part, Path(default_storage.path(poster_name)))
        part.replace(video_path)
    finally:
        part.unlink(missing_ok=True)


def restore_video(pk: int) -> str:
    """A stored video went missing: fetch it again while the upstream link still works."""
    generation = Generation.objects.filter(pk=pk, state=State.COMPLETED).first()
    if generation is None or not generation.video_url:
        return "nothing to restore"
    if default_storage.exists(generation.video.name) and default_storage.exists(
        generation.poster.name
    ):
        return "present"
    try:
        _copy_video(generation)
    except (luma.LumaError, OSError, ValueError, av.FFmpegError) as exc:
        log.warning("could not restore the video of %s: %s", generation.code, exc)
        return "upstream link no longer works"
    generation.touch("video fetched again after the stored copy went missing")
    return "restored"
