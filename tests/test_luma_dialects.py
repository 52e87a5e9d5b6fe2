"""The app's client in both dialects against the emulator: in-process (no key, the default) and
over real HTTP with a key, as a real router or Luma's own API would be reached."""

from __future__ import annotations

import threading

import av
import pytest
from django.core.files.storage import default_storage

from generations import luma, tasks
from generations.models import Generation, State
from luma_emulator import Emulator
from luma_emulator.server import make_server
from tests.conftest import make_generation

pytestmark = pytest.mark.django_db
KEY = "sk-emulator-key"


@pytest.fixture
def instant(monkeypatch):
    """The in-process emulator finishes a generation at its first read."""
    monkeypatch.setenv("LUMA_EMULATOR_DREAM_SECONDS", "0")
    monkeypatch.delenv("LUMA_EMULATOR_API_KEY", raising=False)


@pytest.fixture
def standalone(tmp_path):
    """The emulator served over loopback HTTP, requiring a key, as `manage.py luma_emulator`."""
    emulator = Emulator(tmp_path / "standalone", dream_seconds=0, api_key=KEY)
    server = make_server(emulator, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield emulator, server.base_url
    server.shutdown()
    server.server_close()


def run_to_the_end(generation: Generation) -> Generation:
    """What the worker does: submit, poll until finished, store."""
    tasks.submit_generation(generation.pk)
    for _ in range(5):
        Generation.objects.filter(pk=generation.pk).update(next_poll_at="2000-01-01T00:00Z")
        tasks.sweep()
        generation.refresh_from_db()
        if generation.state not in (State.QUEUED, State.DREAMING):
            break
    if generation.state == State.STORING:
        assert tasks.store_video(generation.pk) == "stored"
        generation.refresh_from_db()
    return generation


def seconds_of(generation: Generation) -> float:
    with av.open(default_storage.path(generation.video.name)) as container:
        return float(container.duration / av.time_base)


@pytest.mark.parametrize("dialect", ["router", "official"])
def test_it_makes_and_extends_a_video_on_the_built_in_emulator(alice, settings, instant, dialect):
    settings.LUMA_API_DIALECT = dialect
    parent = run_to_the_end(make_generation(alice, resolution="540p", duration="5"))
    assert parent.state == State.COMPLETED
    assert 4.5 < seconds_of(parent) < 5.5
    child = run_to_the_end(
        make_generation(alice, prompt="And then the tide comes in", parent=parent)
    )
    assert child.state == State.COMPLETED
    assert 9 < seconds_of(child) < 11  # the parent, then about five seconds more


@pytest.mark.parametrize(("dialect", "path"), [("router", ""), ("official", "/dream-machine/v1")])
def test_it_reaches_a_luma_over_http_with_a_key(alice, settings, standalone, dialect, path):
    emulator, base_url = standalone
    settings.LUMA_API_KEY, settings.LUMA_BASE_URL = KEY, base_url + path
    settings.LUMA_API_DIALECT = dialect
    generation = run_to_the_end(make_generation(alice, resolution="540p"))
    assert generation.state == State.COMPLETED
    assert generation.video_url.startswith(base_url + "/")
    assert emulator.stats()["created"] == 1


def test_a_wrong_key_fails_the_generation_as_a_configuration_problem(alice, settings, standalone):
    emulator, base_url = standalone
    settings.LUMA_API_KEY, settings.LUMA_BASE_URL = "sk-wrong", base_url
    generation = run_to_the_end(make_generation(alice))
    assert generation.state == State.FAILED
    assert "administrator must check the settings" in generation.failure_reason
    assert emulator.stats()["created"] == 0


def test_it_understands_the_sister_routers(alice, tmp_path, monkeypatch):
    emulator = Emulator(
        tmp_path / "sister", dream_seconds=0, vocabulary="sister", create_as_array=True
    )
    client = luma.LumaClient(
        luma.httpx.Client(
            transport=luma.httpx.WSGITransport(app=emulator), base_url=luma.EMULATOR_BASE_URL
        )
    )
    assert client.create(luma.VideoRequest(prompt="A fox in the snow")).state == "queued"
    monkeypatch.setattr(luma, "client", lambda: client)
    generation = run_to_the_end(make_generation(alice, resolution="540p"))
    assert generation.state == State.COMPLETED


def test_without_a_key_the_client_is_the_same_code_over_an_in_process_transport(settings, instant):
    client = luma.build_client()
    assert isinstance(client.http._transport, luma.httpx.WSGITransport)
    assert client.create(luma.VideoRequest(prompt="A fox in the snow")).state == "queued"
