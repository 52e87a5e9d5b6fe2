"""Background work, run by django-q2 workers.

Every task takes a primary key (or nothing), re-reads its rows and claims them with a conditional
UPDATE before doing anything, so running a task twice, or two workers at once, is safe.

- `submit_generation(pk)`: sends a new generation to Luma (queued on commit by the view).
- `poll_luma()`: the poller. A django-q2 Schedule starts it every minute; it polls the due
  generations every second or so for about a minute under a lease (a second copy exits at once),
  then hands over to a fresh copy of itself while work remains. It also retries submits and
  stores that are due, which is how work a dead worker dropped is picked up again.
- `store_video(pk)`: copies a finished video into our storage and makes its poster.
"""

from __future__ import annotations

import base64
import logging
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
from django.conf import settings
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from django_q.tasks import async_task

from generations import luma
from generations.models import IN_FLIGHT, Generation, Lease, State
from generations.posters import make_poster

log = logging.getLogger(__name__)

POLLER_LEASE = "poller"
DISPATCH_LEASE = "dispatch"
# How long one poller task runs before handing over (below Q_CLUSTER's timeout).
POLLER_RUN_SECONDS = 58.0
POLLER_LEASE_SECONDS = 20.0
POLL_CONCURRENCY = 8
SUBMIT_CLAIM_SECONDS = 120.0
STORE_CLAIM_SECONDS = 300.0
MAX_STORE_ATTEMPTS = 5


def enqueue_submit(generation: Generation) -> None:
    async_task(submit_generation, generation.pk, task_name=f"submit {generation.code}")


def enqueue_store(generation: Generation) -> None:
    async_task(store_video, generation.pk, task_name=f"store {generation.code}")


def kick_poller() -> None:
    async_task(poll_luma, task_name="poll luma")


# --- submit ---------------------------------------------------------------------------------


def submit_generation(pk: int) -> str:
    """Send this generation (and whatever else waits its turn) if a slot is free."""
    dispatch()
    generation = Generation.objects.filter(pk=pk).first()
    if generation is None or generation.state != State.SUBMITTING or generation.upstream_id:
        kick_poller()
        return (
            "waiting for a slot"
            if generation and generation.state == State.WAITING
            else ("nothing to submit")
        )
    if not generation.claim(SUBMIT_CLAIM_SECONDS):
        return "another worker is submitting it"
    result = _submit(generation)
    kick_poller()
    return result


def dispatch() -> int:
    """Move waiting generations to SUBMITTING while the account has free slots.

    Under a short lease, so two dispatchers cannot both count the same free slot. It only
    changes states; the HTTP calls happen after, outside the lease.
    """
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


def enqueue_refresh(generation: Generation) -> None:
    async_task(refresh_generation, generation.pk, task_name=f"refresh {generation.code}")


def refresh_generation(pk: int) -> str:
    """Re-read one generation from the upstream now (a callback said it changed)."""
    generation = Generation.objects.filter(pk=pk, state__in=IN_FLIGHT).first()
    if generation is None:
        return "not in flight"
    _apply(generation, _fetch(luma.client(), generation))
    return generation.state


def _submit(generation: Generation) -> str:
    client = luma.client()
    try:
        request = video_request(generation, client)
        if generation.parent_id and generation.parent and generation.parent.upstream_id:
            upstream = client.extend(generation.parent.upstream_id, request)
        else:
            upstream = client.create(request)
    except luma.TransientError as exc:
        if generation.attempts >= 8:
            generation.mark_failed(
                f"Luma was unavailable; gave up after {generation.attempts} tries."
            )
            return "gave up"
        delay = exc.retry_after if exc.retry_after is not None else backoff(generation.attempts)
        log.info("submit of %s will be retried in %.1fs: %s", generation.code, delay, exc)
        generation.release(retry_in=delay)
        return "retry later"
    except luma.AmbiguousError as exc:
        log.warning("submit of %s is ambiguous: %s", generation.code, exc)
        generation.mark_failed(
            "Luma did not answer, so the video may or may not have been started. "
            "Retry to make it again."
        )
        return "ambiguous"
    except luma.PermanentError as exc:
        generation.mark_failed(refusal_reason(exc))
        return "refused"
    generation.mark_submitted(upstream)
    return f"submitted as {upstream.id}"


def backoff(attempt: int, base: float = 2.0, cap: float = 120.0) -> float:
    """Exponential backoff with full jitter: spreads a crowd of retries out."""
    return random.uniform(base / 2, min(cap, base * 2 ** max(attempt - 1, 0)))


def refusal_reason(exc: luma.LumaError) -> str:
    if exc.status in (401, 403):
        return "Luma refused our API key or account (an administrator must check the settings)."
    return f"Luma refused this request: {exc.message}"


# --- poll -----------------------------------------------------------------------------------


def poll_luma(run_seconds: float = POLLER_RUN_SECONDS) -> str:
    holder = uuid.uuid4().hex
    if not Lease.acquire(POLLER_LEASE, holder, POLLER_LEASE_SECONDS):
        return "another poller holds the lease"
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
    """One pass over everything due: polls, submit retries, stores. Returns rows handled."""
    dispatch()
    now = timezone.now()
    due = list(Generation.objects.due(now).filter(state__in=IN_FLIGHT).order_by("next_poll_at"))
    if due:
        client = luma.client()
        with ThreadPoolExecutor(POLL_CONCURRENCY) as pool:
            answers = list(pool.map(lambda g: _fetch(client, g), due))
        for generation, answer in zip(due, answers, strict=True):
            _apply(generation, answer)
    retries = list(
        Generation.objects.due(now)
        .filter(state=State.SUBMITTING, upstream_id="")
        .unclaimed(now)
        .order_by("next_poll_at")[: settings.LUMA_MAX_CONCURRENT]
    )
    for generation in retries:
        if generation.claim(SUBMIT_CLAIM_SECONDS):
            _submit(generation)
    stores = list(Generation.objects.due(now).filter(state=State.STORING).unclaimed(now))
    for generation in stores:
        # A store task that died left its row here; queue one more (once per minute at most).
        if generation.defer(60):
            enqueue_store(generation)
    return len(due) + len(retries) + len(stores)


def _fetch(client: luma.LumaClient, generation: Generation) -> luma.Upstream | Exception:
    try:
        return client.get(generation.upstream_id)
    except luma.LumaError as exc:
        return exc


def _apply(generation: Generation, answer: luma.Upstream | Exception) -> None:
    if isinstance(answer, luma.NotFound):
        generation.poll_failed(answer)
        if generation.poll_errors >= 3:
            generation.mark_failed("Luma no longer knows this video (it was lost upstream).")
        return
    if isinstance(answer, Exception):
        log.info("poll of %s failed: %s", generation.code, answer)
        generation.poll_failed(answer)
        return
    if generation.apply_upstream(answer) and generation.state == State.STORING:
        enqueue_store(generation)


# --- store ----------------------------------------------------------------------------------


def store_video(pk: int) -> str:
    generation = Generation.objects.filter(pk=pk, state=State.STORING).first()
    if generation is None:
        return "nothing to store"
    if not generation.claim(STORE_CLAIM_SECONDS):
        return "another worker is storing it"
    video_name = f"videos/{generation.code}.mp4"
    poster_name = f"posters/{generation.code}.jpg"
    video_path = Path(default_storage.path(video_name))
    try:
        luma.client().download(
            generation.video_url, video_path, max_bytes=settings.LUMA_MAX_VIDEO_BYTES
        )
        make_poster(video_path, Path(default_storage.path(poster_name)))
    except (luma.TransientError, luma.NotFound, OSError, ValueError, av.FFmpegError) as exc:
        if generation.attempts >= MAX_STORE_ATTEMPTS:
            generation.mark_failed("The finished video could not be copied into our storage.")
            return "gave up"
        log.info("store of %s will be retried: %s", generation.code, exc)
        generation.release(retry_in=backoff(generation.attempts))
        return "retry later"
    except luma.PermanentError as exc:
        generation.mark_failed(f"The finished video could not be copied: {exc.message}")
        return "refused"
    generation.mark_completed(video_name, poster_name)
    return "stored"
