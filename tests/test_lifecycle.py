"""The lifecycle under the upstream's faults, each rule driven by the emulator's fault injection:
never lose, never duplicate, never stall."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from generations import luma, tasks
from generations.models import Generation, State
from luma_emulator import Emulator
from luma_emulator.server import make_server
from luma_emulator.testing import Clock
from tests.conftest import make_generation

pytestmark = pytest.mark.django_db
DREAM = 10.0


@pytest.fixture
def clock():
    return Clock(time.time())


def connect(monkeypatch, emulator: Emulator, dialect: str = "router") -> luma.LumaClient:
    base = luma.EMULATOR_BASE_URL + ("/dream-machine/v1" if dialect == "official" else "")
    http = httpx.Client(transport=httpx.WSGITransport(app=emulator), base_url=base)
    client = luma.LumaClient(http, dialect=dialect)
    monkeypatch.setattr(luma, "client", lambda: client)
    return client


@pytest.fixture
def emulator(tmp_path, clock, monkeypatch):
    emulator = Emulator(tmp_path / "emu", dream_seconds=DREAM, clock=clock, seed=1)
    connect(monkeypatch, emulator)
    return emulator


@pytest.fixture
def official(tmp_path, clock, monkeypatch):
    emulator = Emulator(tmp_path / "emu-official", dream_seconds=DREAM, clock=clock, seed=1)
    connect(monkeypatch, emulator, "official")
    return emulator


def reload(generation: Generation) -> Generation:
    return Generation.objects.get(pk=generation.pk)


def make_due(generation: Generation) -> None:
    Generation.objects.filter(pk=generation.pk).update(next_poll_at=timezone.now())


def finish(generation: Generation, clock: Clock) -> Generation:
    """Let the upstream finish it and run the poller and the store task as a worker would."""
    clock.now += DREAM * 2
    for _ in range(6):
        make_due(generation)
        tasks.sweep()
        if reload(generation).state == State.STORING:
            tasks.store_video(generation.pk)
        if reload(generation).is_terminal:
            break
    return reload(generation)


def video(resolution: str = "540p", **fields) -> dict:
    return {"resolution": resolution, "duration": "5", **fields}


# --- submitting -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["500", "502", "503"])
def test_a_server_error_on_create_is_retried_with_backoff(alice, emulator, clock, status):
    emulator.set_faults({"endpoints": {"create": {"errors": {status: 1.0}}}})
    generation = make_generation(alice, **video())
    assert tasks.submit_generation(generation.pk) == "retry later"
    generation = reload(generation)
    assert generation.state == State.SUBMITTING and generation.claimed_until is None
    assert generation.next_poll_at > timezone.now()
    emulator.set_faults({})
    make_due(generation)
    tasks.sweep()
    assert reload(generation).state == State.QUEUED
    assert emulator.stats()["created"] == 1
    assert finish(generation, clock).state == State.COMPLETED


def test_backoff_grows_and_keeps_some_jitter():
    waits = [[tasks.backoff(attempt) for _ in range(200)] for attempt in (1, 3, 6)]
    assert max(waits[0]) <= 2.0 < max(waits[1]) <= 8.0 < max(waits[2]) <= 64.0
    assert len({round(w, 3) for w in waits[2]}) > 100


def test_the_account_limit_answer_is_honoured_with_its_retry_after(
    alice, bob, tmp_path, clock, monkeypatch, settings
):
    emulator = Emulator(tmp_path / "emu-limit", dream_seconds=DREAM, clock=clock, max_in_flight=1)
    connect(monkeypatch, emulator)
    settings.LUMA_MAX_CONCURRENT = 5  # we think we may, the upstream says no
    first, second = make_generation(alice, **video()), make_generation(bob, **video())
    tasks.submit_generation(first.pk)
    assert tasks.submit_generation(second.pk) == "retry later"
    second = reload(second)
    assert second.state == State.SUBMITTING
    assert second.next_poll_at > timezone.now() + timedelta(seconds=0.5)
    assert emulator.stats()["rate_limited"] >= 1 and emulator.stats()["created"] == 1


def test_a_busy_account_is_waited_for_without_using_up_attempts(alice, emulator, settings):
    emulator.set_faults({"endpoints": {"create": {"rate_limit": 1.0, "retry_after": 1}}})
    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    for _ in range(tasks.MAX_SUBMIT_ATTEMPTS + 2):
        make_due(generation)
        tasks.sweep()
    assert reload(generation).state == State.SUBMITTING
    # Its time in our own queue does not count ...
    Generation.objects.filter(pk=generation.pk).update(
        created_at=timezone.now() - timedelta(minutes=settings.LUMA_TIMEOUT_MINUTES + 1)
    )
    make_due(generation)
    tasks.sweep()
    assert reload(generation).state == State.SUBMITTING
    # ... but the time since it left the queue does: it is not waited for for ever.
    generation.events.filter(to_state=State.SUBMITTING).update(
        at=timezone.now() - timedelta(minutes=settings.LUMA_TIMEOUT_MINUTES + 1)
    )
    make_due(generation)
    tasks.sweep()
    generation = reload(generation)
    assert generation.state == State.FAILED
    assert generation.failure_reason == "Luma stayed too busy to take this video for 30 minutes."


def test_gives_up_submitting_after_many_failures_with_a_reason(alice, emulator):
    emulator.set_faults({"endpoints": {"create": {"errors": {"503": 1.0}}}})
    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    for _ in range(tasks.MAX_SUBMIT_ATTEMPTS + 1):
        make_due(generation)
        tasks.sweep()
    generation = reload(generation)
    assert generation.state == State.FAILED
    assert generation.failure_reason.startswith("Luma was unavailable; gave up after")
    assert "maintenance" in generation.failure_detail.lower() or generation.failure_detail


@pytest.mark.parametrize("fault", ["drop", "hang", "malformed"])
def test_an_unanswered_create_on_a_router_fails_clearly_and_is_never_resent(alice, emulator, fault):
    emulator.set_faults({"endpoints": {"create": {fault: 1.0}}})
    generation = make_generation(alice, **video())
    assert tasks.submit_generation(generation.pk) == "ambiguous"
    generation = reload(generation)
    assert generation.state == State.FAILED
    assert generation.failure_reason == tasks.NO_ANSWER
    for _ in range(3):
        make_due(generation)
        tasks.sweep()
    assert emulator.stats()["created"] == 1
    assert emulator.stats()["duplicate_creates"] == 0


@pytest.mark.parametrize("fault", ["drop", "hang", "malformed"])
def test_an_unanswered_create_on_the_official_api_is_found_and_adopted(
    alice, official, clock, fault
):
    official.set_faults({"endpoints": {"create": {fault: 1.0}}})
    generation = make_generation(alice, **video())
    result = tasks.submit_generation(generation.pk)
    assert result.startswith("adopted ")
    official.set_faults({})
    generation = reload(generation)
    assert generation.state == State.QUEUED and generation.upstream_id
    assert "adopted" in generation.events.last().detail
    assert finish(generation, clock).state == State.COMPLETED
    assert official.stats()["created"] == 1 and official.stats()["duplicate_creates"] == 0


def test_an_official_create_that_never_arrived_is_sent_again(alice, official, monkeypatch):
    client = luma.client()
    real_create = client.create
    calls = []

    def lost_on_the_way(request):
        calls.append(request)
        if len(calls) == 1:
            raise luma.AmbiguousError("connection reset before an answer")
        return real_create(request)

    monkeypatch.setattr(client, "create", lost_on_the_way)
    generation = make_generation(alice, **video())
    assert tasks.submit_generation(generation.pk) == "not created: will send again"
    assert reload(generation).state == State.SUBMITTING
    make_due(generation)
    tasks.sweep()
    assert reload(generation).state == State.QUEUED
    assert official.stats()["created"] == 1 and len(calls) == 2


@pytest.mark.parametrize(
    ("dialect", "outcome"), [("router", State.FAILED), ("official", State.QUEUED)]
)
def test_a_worker_killed_while_sending_leads_to_no_duplicate(
    alice, tmp_path, clock, monkeypatch, dialect, outcome
):
    emulator = Emulator(tmp_path / f"emu-{dialect}", dream_seconds=DREAM, clock=clock)
    client = connect(monkeypatch, emulator, dialect)
    generation = make_generation(alice, state=State.SUBMITTING, **video())
    # The dead worker claimed the row and its request reached Luma; then it was killed.
    assert generation.claim(tasks.SUBMIT_CLAIM_SECONDS)
    client.create(tasks.video_request(generation, client))
    Generation.objects.filter(pk=generation.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1), next_poll_at=timezone.now()
    )
    tasks.sweep()
    # The task itself comes back too (the ORM broker redelivers it): still no second create.
    tasks.submit_generation(generation.pk)
    generation = reload(generation)
    assert generation.state == outcome
    assert emulator.stats()["created"] == 1 and emulator.stats()["duplicate_creates"] == 0


def test_a_refused_request_fails_at_once_with_lumas_message(alice, emulator):
    generation = make_generation(alice, loop=True, image_end_url="https://example.com/end.jpg")
    assert tasks.submit_generation(generation.pk) == "refused"
    generation = reload(generation)
    assert generation.state == State.FAILED
    assert generation.failure_reason.startswith("Luma refused this request: ")
    assert "loop" in generation.failure_reason.lower()
    assert "HTTP 400" in generation.failure_detail


# --- polling --------------------------------------------------------------------------------


def test_polls_are_batched_on_a_router_that_offers_tasks(alice, emulator, clock):
    generations = [make_generation(alice, prompt=f"Clip number {n}", **video()) for n in range(3)]
    for generation in generations:
        tasks.submit_generation(generation.pk)
        make_due(generation)
    before = emulator.stats()["requests"]
    clock.now += DREAM * 0.6
    tasks.sweep()
    after = emulator.stats()["requests"]
    assert after.get("tasks", 0) - before.get("tasks", 0) == 1
    assert after.get("get", 0) == before.get("get", 0)
    assert {reload(g).state for g in generations} == {State.DREAMING}


def test_polling_slows_down_for_long_generations_and_after_errors(alice, emulator, clock):
    generation = make_generation(
        alice, state=State.DREAMING, upstream_id="x", submitted_at=timezone.now()
    )
    quick = generation.poll_delay()
    generation.submitted_at = timezone.now() - timedelta(minutes=5)
    slow = generation.poll_delay()
    generation.poll_errors = 3
    assert quick < slow < generation.poll_delay() <= 60


def test_a_generation_forgotten_upstream_fails_as_lost_after_three_404s(alice, emulator, clock):
    emulator.set_faults({"generations": {"forget": 1.0, "forget_after": 0, "stuck": 0}})
    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    emulator.set_faults({"generations": {"stuck": 1.0}})  # later creates are not forgotten
    clock.now += DREAM * 2
    states = []
    for _ in range(4):
        make_due(generation)
        tasks.sweep()
        states.append(reload(generation).state)
    assert states[:2] == [State.QUEUED, State.QUEUED]  # two 404s: not yet
    assert reload(generation).state == State.FAILED
    assert (
        reload(generation).failure_reason
        == "Luma no longer knows this video (it was lost upstream)."
    )


def test_a_generation_that_never_finishes_fails_as_timed_out(alice, emulator, clock, settings):
    settings.LUMA_TIMEOUT_MINUTES = 30
    emulator.set_faults({"generations": {"stuck": 1.0}})
    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    clock.now += DREAM * 10
    make_due(generation)
    tasks.sweep()
    assert reload(generation).state == State.DREAMING
    Generation.objects.filter(pk=generation.pk).update(
        submitted_at=timezone.now() - timedelta(minutes=31)
    )
    tasks.sweep()
    generation = reload(generation)
    assert generation.state == State.FAILED
    assert generation.failure_reason == "Luma did not finish this video within 30 minutes."


def test_completed_without_a_video_link_is_polled_again_and_then_stored(alice, emulator, clock):
    emulator.set_faults({"generations": {"incomplete": 1.0}})
    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    clock.now += DREAM * 2
    make_due(generation)
    tasks.sweep()
    assert reload(generation).state == State.QUEUED  # "completed" with no link: not yet
    assert finish(generation, clock).state == State.COMPLETED


def test_a_generation_that_fails_upstream_shows_lumas_reason(alice, emulator, clock):
    emulator.set_faults({"generations": {"fail": 1.0, "fail_reason": "Frame moderation failed"}})
    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    generation = finish(generation, clock)
    assert (generation.state, generation.failure_reason) == (
        State.FAILED,
        "Frame moderation failed",
    )


def test_poll_errors_lose_nothing(alice, emulator, clock):
    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    emulator.set_faults(
        {"endpoints": {"tasks": {"errors": {"502": 1.0}}, "get": {"malformed": 1.0}}}
    )
    clock.now += DREAM * 2
    for _ in range(3):
        make_due(generation)
        tasks.sweep()
    generation = reload(generation)
    assert generation.state == State.QUEUED and generation.poll_errors >= 1
    emulator.set_faults({})
    assert finish(generation, clock).state == State.COMPLETED


# --- storing --------------------------------------------------------------------------------


def test_a_failed_download_is_retried_and_leaves_no_half_file(alice, emulator, clock):
    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    emulator.set_faults({"endpoints": {"download": {"malformed": 1.0}}})
    clock.now += DREAM * 2
    make_due(generation)
    tasks.sweep()
    assert tasks.store_video(generation.pk) == "retry later"
    generation = reload(generation)
    assert generation.state == State.STORING
    assert not default_storage.exists(f"posters/{generation.code}.jpg")
    emulator.set_faults({})
    make_due(generation)
    Generation.objects.filter(pk=generation.pk).update(claimed_until=None)
    tasks.sweep()  # the sweep queues the store again; run it as the worker would
    assert tasks.store_video(generation.pk) == "stored"
    assert reload(generation).state == State.COMPLETED


def test_a_video_over_the_size_limit_fails_with_a_reason(alice, emulator, clock, settings):
    settings.LUMA_MAX_VIDEO_BYTES = 1000
    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    generation = finish(generation, clock)
    assert generation.state == State.FAILED
    assert generation.failure_reason == "The finished video could not be copied into our storage."
    assert "larger than 1000 bytes" in generation.failure_detail


def test_a_stored_video_that_went_missing_is_fetched_again(alice, emulator, clock):
    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    generation = finish(generation, clock)
    size = default_storage.size(generation.video.name)
    default_storage.delete(generation.video.name)
    assert tasks.restore_video(generation.pk) == "restored"
    assert default_storage.size(generation.video.name) == size
    assert tasks.restore_video(generation.pk) == "present"


# --- callbacks ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_luma_callbacks_trigger_an_immediate_re_read(
    alice, live_server, tmp_path, settings, broker, monkeypatch
):
    emulator = Emulator(tmp_path / "emu-callbacks", dream_seconds=1.5)
    server = make_server(emulator, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    emulator.start_background()
    try:
        settings.SITE_URL = live_server.url
        settings.LUMA_API_KEY, settings.LUMA_BASE_URL = "sk-any", server.base_url
        generation = make_generation(alice, **video())
        tasks.submit_generation(generation.pk)
        assert tasks.callback_url(generation) in str(
            emulator.store.get(reload(generation).upstream_id)
        )
        broker.purge_queue()
        deadline = timezone.now() + timedelta(seconds=20)
        while broker.queue_size() == 0 and timezone.now() < deadline:
            threading.Event().wait(0.2)
        task = broker.dequeue()
        assert task, "no callback arrived"
        # The callback queued a re-read of this generation (its body was not trusted).
        from django_q.signing import SignedPackage

        package = SignedPackage.loads(task[0][1])
        assert package["func"] == tasks.refresh_generation and package["args"] == (generation.pk,)
        assert tasks.refresh_generation(generation.pk) in (State.DREAMING, State.STORING)
    finally:
        emulator.stop_background()
        server.shutdown()
        server.server_close()


def test_a_callback_with_a_wrong_token_is_refused(alice, client):
    generation = make_generation(alice, state=State.DREAMING, upstream_id="g1")
    response = client.post(f"/callbacks/luma/{generation.code}/{'0' * 32}/", data={})
    assert response.status_code == 404
    good = f"/callbacks/luma/{generation.code}/{generation.callback_token()}/"
    assert client.post(good, data="{}", content_type="application/json").status_code == 200
    assert client.get(good).status_code == 405


def test_waiting_cards_show_their_place_in_line_and_move_up(alice, bob, emulator, settings):
    from django.urls import reverse

    from tests.conftest import login

    settings.LUMA_MAX_CONCURRENT = 1
    first = make_generation(alice, prompt="Alice goes first", **video())
    tasks.submit_generation(first.pk)
    mine = make_generation(alice, prompt="Alice again", **video())
    theirs = make_generation(bob, prompt="Bob's turn", **video())
    html = login(bob).get(reverse("gallery")).content.decode()
    # Bob has nothing upstream: he goes before Alice's second.
    assert "1st in line" in html and "2nd in line" in html
    assert html.index("Alice again") > html.index("2nd in line") > html.index("Bob&#x27;s turn")
    before = reload(mine).updated_at
    Generation.objects.filter(pk=first.pk).update(state=State.FAILED)
    tasks.dispatch()
    assert reload(theirs).state == State.SUBMITTING
    assert reload(mine).updated_at > before  # open galleries hear it moved up
    assert "1st in line" in login(bob).get(reverse("gallery")).content.decode()


def test_playing_a_video_whose_file_went_missing_fetches_it_again(alice, emulator, clock, broker):
    from django.urls import reverse

    from tests.conftest import login

    generation = make_generation(alice, **video())
    tasks.submit_generation(generation.pk)
    generation = finish(generation, clock)
    default_storage.delete(generation.video.name)
    broker.purge_queue()
    response = login(alice).get(reverse("video", args=[generation.code]))
    assert response.status_code == 404
    assert broker.queue_size() == 1
    assert tasks.restore_video(generation.pk) == "restored"
    assert login(alice).get(reverse("video", args=[generation.code])).status_code == 200
