"""Luma's own SDK (lumaai) against the emulator served on a real socket."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import lumaai
import pytest

from luma_emulator import Emulator, make_server
from luma_emulator.testing import probe

KEY = "luma-test-key"


@pytest.fixture
def served(tmp_path):
    emu = Emulator(tmp_path / "emulator", dream_seconds=1.0, api_key=KEY, max_in_flight=2)
    server = make_server(emu, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    emu.start_background(interval=0.05)
    yield emu, f"{server.base_url}/dream-machine/v1"
    emu.stop_background()
    server.shutdown()
    server.server_close()


def sdk(base_url: str, key: str = KEY) -> lumaai.LumaAI:
    return lumaai.LumaAI(auth_token=key, base_url=base_url, max_retries=0, timeout=30)


def test_it_serves_the_whole_life_of_a_generation_to_the_sdk(served):
    base_url = served[1]
    client = sdk(base_url)

    generation = client.generations.create(
        model="ray-2", prompt="a lantern drifting on a river", resolution="540p", duration="5s"
    )
    assert generation.state == "queued"
    deadline = time.monotonic() + 30
    while generation.state not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
        generation = client.generations.get(generation.id)
    listed = client.generations.list(limit=10)
    video = httpx.get(generation.assets.video, timeout=10)
    client.generations.delete(generation.id)

    assert generation.state == "completed"
    assert generation.request.prompt == "a lantern drifting on a river"
    assert [g.id for g in listed.generations] == [generation.id]
    assert listed.has_more is False
    decoded = probe(video.content)
    assert (decoded.codec, decoded.width, decoded.height) == ("h264", 960, 540)
    with pytest.raises(lumaai.NotFoundError):
        client.generations.get(generation.id)


def test_it_answers_ping_credits_and_concepts_to_the_sdk(served):
    base_url = served[1]
    client = sdk(base_url)

    assert client.ping.check().message == "pong"
    assert client.credits.get().credit_balance > 0
    assert "pan_left" in client.generations.concepts.list()


def test_it_raises_the_sdks_typed_errors(served):
    base_url = served[1]
    client = sdk(base_url)

    with pytest.raises(lumaai.AuthenticationError):
        sdk(base_url, key="wrong").generations.list()
    with pytest.raises(lumaai.NotFoundError):
        client.generations.get(str(uuid.uuid4()))
    with pytest.raises(lumaai.BadRequestError) as bad:
        client.generations.create(model="ray-2", prompt="hi")
    assert "Prompt is too short" in str(bad.value)
    client.generations.create(model="ray-2", prompt="first of two", resolution="540p")
    client.generations.create(model="ray-2", prompt="second of two", resolution="540p")
    with pytest.raises(lumaai.RateLimitError):
        client.generations.create(model="ray-2", prompt="one too many", resolution="540p")


def test_it_shows_the_sdk_retrying_a_create_into_a_duplicate(served):
    emu, base_url = served
    emu.set_faults({"seed": 1, "endpoints": {"create": {"drop": 1.0}}})
    client = lumaai.LumaAI(auth_token=KEY, base_url=base_url, max_retries=1, timeout=10)

    with pytest.raises(lumaai.APIConnectionError):
        client.generations.create(model="ray-2", prompt="retried without a key", resolution="540p")

    stats = emu.stats()
    assert stats["created"] == 2
    assert stats["duplicate_creates"] == 1
