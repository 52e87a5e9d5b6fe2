"""The background work against the emulator: submit, poll (with its lease), store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import av
import httpx
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from generations import luma, tasks
from generations.models import Generation, Lease, State
from luma_emulator import Emulator
from luma_emulator.testing import Clock
from tests.conftest import make_generation

pytestmark = pytest.mark.django_db
DREAM = 10.0


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def emulator(tmp_path, clock, monkeypatch):
    emulator = Emulator(tmp_path / "emu", dream_seconds=DREAM, clock=clock)
    http = httpx.Client(
        transport=httpx.WSGITransport(app=emulator), base_url=luma.EMULATOR_BASE_URL
    )
    client = luma.LumaClient(http)
    monkeypatch.setattr(luma, "client", lambda: client)
    return emulator


def upstream_answers(monkeypatch, handler) -> None:
    http = httpx.Client(transport=httpx.MockTransport(handler), base_url="https://router.test")
    client = luma.LumaClient(http, api_key="sk-test")
    monkeypatch.setattr(luma, "client", lambda: client)


def make_due(generation: Generation) -> None:
    Generation.objects.filter(pk=generation.pk).update(next_poll_at=timezone.now())


def reload(generation: Generation) -> Generation:
    return Generation.objects.get(pk=generation.pk)


def submitted(alice, **fields) -> Generation:
    generation = make_generation(alice, resolution="540p", duration="5", **fields)
    assert tasks.submit_generation(generation.pk).startswith("submitted as ")
    generation = reload(generation)
    make_due(generation)
    return generation


def test_it_submits_a_generation_and_records_the_upstream_id(alice, emulator, broker):
    generation = make_generation(alice, prompt="A kite over the dunes")
    assert tasks.submit_generation(generation.pk).startswith("submitted as ")
    generation = reload(generation)
    assert generation.state == State.QUEUED
    assert generation.upstream_id and generation.submitted_at and generation.next_poll_at
    assert [(e.from_state, e.to_state) for e in generation.events.all()] == [
        ("waiting", "submitting"),
        ("submitting", "queued"),
    ]
    assert emulator.stats()["created"] == 1
    # The poller was woken so the first poll comes within seconds.
    assert broker.queue_size() == 1


def test_running_submit_twice_creates_one_upstream_generation(alice, emulator, broker):
    generation = make_generation(alice)
    tasks.submit_generation(generation.pk)
    assert tasks.submit_generation(generation.pk) == "nothing to submit"
    assert emulator.stats()["created"] == 1


def test_a_submit_claimed_by_another_worker_is_left_alone(alice, emulator, broker):
    generation = make_generation(alice, state=State.SUBMITTING)
    assert generation.claim(60)
    assert tasks.submit_generation(generation.pk) == "another worker is submitting it"
    assert emulator.stats()["created"] == 0
    assert reload(generation).state == State.SUBMITTING


def test_it_follows_a_generation_to_a_stored_playable_video(alice, emulator, clock, broker):
    generation = submitted(alice, prompt="A lighthouse in a storm")
    clock.now += DREAM * 0.6
    tasks.sweep()
    generation = reload(generation)
    assert generation.state == State.DREAMING
    changed_at = generation.updated_at

    # Polled again in the same state: nothing a person sees changed, so updated_at stays.
    make_due(generation)
    tasks.sweep()
    assert reload(generation).updated_at == changed_at

    clock.now += DREAM
    make_due(generation)
    broker.purge_queue()
    tasks.sweep()
    generation = reload(generation)
    assert generation.state == State.STORING and generation.video_url
    assert broker.queue_size() == 1  # store_video was queued

    assert tasks.store_video(generation.pk) == "stored"
    generation = reload(generation)
    assert generation.state == State.COMPLETED and generation.completed_at
    assert [e.to_state for e in generation.events.all()] == [
        "submitting", "queued", "dreaming", "storing", "completed"
    ]  # fmt: skip
    with av.open(default_storage.path(generation.video.name)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (960, 540)
        assert 4.5 < float(container.duration / av.time_base) < 5.5
    with Image.open(default_storage.path(generation.poster.name)) as poster:
        assert poster.format == "JPEG" and poster.width == 640
    # Storing twice does nothing more.
    assert tasks.store_video(generation.pk) == "nothing to store"


def test_a_failed_generation_carries_its_reason(alice, emulator, clock):
    generation = submitted(alice, prompt="A blacklisted scene")
    clock.now += DREAM * 2
    tasks.sweep()
    generation = reload(generation)
    assert generation.state == State.FAILED
    assert generation.failure_reason == "Contains blacklisted words"


def test_it_extends_a_finished_generation_through_the_extend_endpoint(alice, emulator, clock):
    parent = submitted(alice, prompt="A paper boat on a river")
    clock.now += DREAM * 2
    tasks.sweep()
    tasks.store_video(parent.pk)
    child = make_generation(alice, prompt="The boat reaches the sea", parent=reload(parent))
    assert tasks.submit_generation(child.pk).startswith("submitted as ")
    child = reload(child)
    assert child.state == State.QUEUED and child.upstream_id != parent.upstream_id
    make_due(child)
    clock.now += DREAM * 2
    tasks.sweep()
    assert tasks.store_video(child.pk) == "stored"
    child = reload(child)
    # An extension plays the parent, then about five seconds more.
    with av.open(default_storage.path(child.video.name)) as container:
        assert 9 < float(container.duration / av.time_base) < 11


def test_the_poller_exits_at_once_while_another_holds_the_lease(alice, emulator):
    assert Lease.acquire(tasks.POLLER_LEASE, "someone-else", 60)
    assert tasks.poll_luma(run_seconds=5) == "another poller holds the lease"


def test_the_poller_sweeps_under_its_lease_then_lets_go(alice, emulator, clock, broker):
    generation = submitted(alice)
    clock.now += DREAM * 0.6
    result = tasks.poll_luma(run_seconds=0.3)
    assert result.endswith("sweeps") and not result.startswith("0")
    assert reload(generation).state == State.DREAMING
    lease = Lease.objects.get(name=tasks.POLLER_LEASE)
    assert lease.expires_at <= timezone.now()
    # Work remains, so it handed over to a fresh poller.
    assert broker.queue_size() >= 1


def test_a_rate_limited_submit_waits_as_long_as_luma_asks(alice, monkeypatch, broker):
    upstream_answers(
        monkeypatch,
        lambda request: httpx.Response(
            429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "7"}
        ),
    )
    generation = make_generation(alice)
    assert tasks.submit_generation(generation.pk) == "retry later"
    generation = reload(generation)
    assert generation.state == State.SUBMITTING and generation.claimed_until is None
    wait = (generation.next_poll_at - timezone.now()).total_seconds()
    assert 6 < wait <= 7


def test_a_submit_retried_by_the_sweep_goes_through(alice, monkeypatch, emulator, broker):
    generation = make_generation(alice, state=State.SUBMITTING)
    make_due(generation)
    tasks.sweep()
    assert reload(generation).state == State.QUEUED
    assert emulator.stats()["created"] == 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, "Luma refused our API key or account (an administrator must check the settings)."),
        (403, "Luma refused our API key or account (an administrator must check the settings)."),
        (400, "Luma refused this request: prompt is too short"),
    ],
)
def test_a_refused_submit_fails_at_once_with_a_reason(alice, monkeypatch, status, reason):
    upstream_answers(
        monkeypatch,
        lambda request: httpx.Response(status, json={"error": {"message": "prompt is too short"}}),
    )
    generation = make_generation(alice)
    tasks.submit_generation(generation.pk)
    generation = reload(generation)
    assert (generation.state, generation.failure_reason) == (State.FAILED, reason)


def test_an_unanswered_submit_is_not_sent_again_blindly(alice, monkeypatch):
    calls = []

    def hang(request):
        calls.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    upstream_answers(monkeypatch, hang)
    generation = make_generation(alice)
    assert tasks.submit_generation(generation.pk) == "ambiguous"
    generation = reload(generation)
    assert generation.state == State.FAILED
    assert "may or may not have been started" in generation.failure_reason
    tasks.sweep()
    assert len(calls) == 1


def test_a_poll_error_backs_off_and_keeps_the_generation(alice, monkeypatch):
    generation = make_generation(alice, state=State.DREAMING, upstream_id="g1")
    upstream_answers(monkeypatch, lambda r: httpx.Response(503, json={"detail": "maintenance"}))
    make_due(generation)
    tasks.sweep()
    generation = reload(generation)
    assert generation.state == State.DREAMING and generation.poll_errors == 1
    assert generation.next_poll_at > timezone.now() + timedelta(seconds=2)


def test_an_interrupted_store_leaves_no_file_and_is_retried(alice, monkeypatch):
    generation = make_generation(
        alice, state=State.STORING, upstream_id="g1", video_url="https://cdn.test/v.mp4"
    )

    def broken():
        yield b"x" * 100
        raise httpx.ReadError("reset")

    upstream_answers(
        monkeypatch,
        lambda r: httpx.Response(200, content=broken(), headers={"Content-Type": "video/mp4"}),
    )
    assert tasks.store_video(generation.pk) == "retry later"
    generation = reload(generation)
    assert generation.state == State.STORING and generation.next_poll_at
    assert not default_storage.exists(f"videos/{generation.code}.mp4")
    assert not any(Path(default_storage.path("videos")).glob("*"))


def test_the_sweep_requeues_a_store_whose_worker_died(alice, broker):
    generation = make_generation(
        alice, state=State.STORING, upstream_id="g1", video_url="https://cdn.test/v.mp4",
        claimed_until=timezone.now() - timedelta(seconds=1), next_poll_at=timezone.now(),
    )  # fmt: skip
    tasks.sweep()
    assert broker.queue_size() == 1
    tasks.sweep()  # not queued again on the next pass
    assert broker.queue_size() == 1
    assert reload(generation).next_poll_at > timezone.now() + timedelta(seconds=30)


def test_the_schedule_that_starts_the_poller_exists_once():
    from django.core.management import call_command
    from django_q.models import Schedule

    call_command("migrate", verbosity=0)
    schedules = Schedule.objects.filter(func="generations.tasks.poll_luma")
    assert schedules.count() == 1
    assert (schedules[0].schedule_type, schedules[0].minutes) == (Schedule.MINUTES, 1)


def test_it_keeps_at_most_the_account_limit_upstream_and_queues_the_rest(
    alice, bob, emulator, settings, broker
):
    settings.LUMA_MAX_CONCURRENT = 2
    mine = [make_generation(alice, prompt=f"Alice's clip {n}") for n in range(4)]
    for generation in mine:
        tasks.submit_generation(generation.pk)
    theirs = make_generation(bob, prompt="Bob's only clip")
    assert tasks.submit_generation(theirs.pk) == "waiting for a slot"
    states = [reload(g).state for g in mine]
    assert states == [State.QUEUED, State.QUEUED, State.WAITING, State.WAITING]
    assert emulator.stats()["created"] == 2


def test_it_takes_turns_between_people_when_slots_free_up(alice, bob, emulator, clock, settings):
    settings.LUMA_MAX_CONCURRENT = 1
    alices = [
        make_generation(alice, prompt=f"Alice's clip {n}", resolution="540p") for n in range(3)
    ]
    bobs = make_generation(bob, prompt="Bob's only clip", resolution="540p")
    tasks.submit_generation(alices[0].pk)
    assert reload(alices[0]).state == State.QUEUED
    # Alice's first finishes upstream: the free slot goes to Bob, not to Alice's second.
    clock.now += DREAM * 2
    make_due(alices[0])
    tasks.sweep()
    tasks.sweep()
    assert reload(alices[0]).state == State.STORING
    assert reload(bobs).state == State.QUEUED
    assert [reload(g).state for g in alices[1:]] == [State.WAITING, State.WAITING]


def test_a_poller_left_behind_by_a_killed_worker_is_waited_out(alice, emulator, clock, broker):
    generation = submitted(alice)
    clock.now += DREAM * 0.6
    # A dead poller's lease, expiring in a moment.
    Lease.acquire(tasks.POLLER_LEASE, "dead-worker", 1.5)
    assert tasks.poll_luma(run_seconds=0.2) == "another poller holds the lease"
    assert tasks.poll_luma(run_seconds=0.2, wait_for_lease=5).endswith("sweeps")
    assert reload(generation).state == State.DREAMING


def test_a_cluster_start_kicks_the_poller_once(db, broker):
    tasks.start_polling_after_spawn(proc_name="Process-1")
    tasks.start_polling_after_spawn(proc_name="Process-2")
    assert broker.queue_size() == 1


def test_a_cluster_restarted_soon_after_kicks_the_poller_again(db, broker):
    tasks.start_polling_after_spawn(proc_name="Process-1")
    Lease.objects.filter(name="poller-kick").update(expires_at=timezone.now())
    tasks.start_polling_after_spawn(proc_name="Process-1")
    assert broker.queue_size() == 2


def test_a_submit_does_not_queue_a_poller_while_one_is_running(alice, emulator, broker):
    assert Lease.acquire(tasks.POLLER_LEASE, "running-poller", 60)
    generation = make_generation(alice)
    assert tasks.submit_generation(generation.pk).startswith("submitted as ")
    assert broker.queue_size() == 0
