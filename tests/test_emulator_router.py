"""The emulator's router dialect (/luma/*), driven in-process through httpx.WSGITransport."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime

import httpx
import pytest
from django.core.management import CommandError, call_command

from generations.management.commands import luma_emulator as command
from luma_emulator import Emulator
from luma_emulator.testing import Clock, probe

DREAM = 10.0


def make_emulator(tmp_path, **options) -> Emulator:
    clock = options.pop("clock", None) or Clock()
    options.setdefault("dream_seconds", DREAM)
    return Emulator(tmp_path / "emulator", clock=clock, **options)


def client_for(emu: Emulator) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=emu), base_url="http://luma-emulator")


def create(client: httpx.Client, **fields) -> dict:
    body = {"user_prompt": "a red kite over green hills", "resolution": "540p", **fields}
    response = client.post("/luma/generations", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_it_answers_a_create_with_a_queued_generation(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    clock = emu.clock

    answer = create(client)

    assert set(answer) == {"id", "state", "created_at"}
    assert answer["state"] == "queued"
    uuid.UUID(answer["id"])
    assert datetime.fromisoformat(answer["created_at"]).timestamp() == clock.now


def test_it_moves_from_queued_to_dreaming_to_completed_with_the_clock(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    clock = emu.clock
    ident = create(client)["id"]

    def read() -> dict:
        response = client.get(f"/luma/generations/{ident}")
        assert response.status_code == 200
        return response.json()

    assert read()["state"] == "queued"
    assert read()["video"] is None
    clock.advance(DREAM * 0.5)
    assert read()["state"] == "dreaming"
    assert read()["video"] is None
    clock.advance(DREAM * 0.5)
    done = read()
    assert done["state"] == "completed"
    assert done["failure_reason"] is None
    assert done["video"]["download_url"].startswith("http://luma-emulator/files/")
    assert done["video"]["url"]
    assert (done["video"]["width"], done["video"]["height"]) == (960, 540)
    assert done["video_raw"]["duration"] == pytest.approx(5.0)
    assert done["thumbnail"].endswith(".jpg")
    assert done["last_frame"].endswith(".jpg")
    assert done["request"]["user_prompt"] == "a red kite over green hills"


def test_it_serves_a_real_h264_video_at_its_download_url(tmp_path):
    emu = make_emulator(tmp_path, dream_seconds=0)
    client = client_for(emu)
    ident = create(client)["id"]
    done = client.get(f"/luma/generations/{ident}").json()

    download = client.get(done["video"]["download_url"])
    thumbnail = client.get(done["thumbnail"])

    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    video = probe(download.content)
    assert (video.codec, video.pix_fmt) == ("h264", "yuv420p")
    assert (video.width, video.height, video.fps) == (960, 540, 24)
    assert video.duration == pytest.approx(5.0, abs=0.05)
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.content[:2] == b"\xff\xd8"


def test_it_builds_urls_from_the_host_the_client_called(tmp_path):
    emu = make_emulator(tmp_path, dream_seconds=0)
    client = client_for(emu)
    ident = create(client)["id"]
    other = httpx.Client(transport=httpx.WSGITransport(app=emu), base_url="https://elsewhere:8443")

    done = other.get(f"/luma/generations/{ident}").json()

    assert done["video"]["download_url"] == f"https://elsewhere:8443/files/{ident}.mp4"


def test_it_completes_at_the_first_read_when_dream_seconds_is_zero(tmp_path):
    emu = make_emulator(tmp_path, dream_seconds=0)
    client = client_for(emu)
    ident = create(client)["id"]

    done = client.get(f"/luma/generations/{ident}").json()

    assert done["state"] == "completed"
    assert client.get(done["video"]["download_url"]).status_code == 200


def test_it_shows_the_expanded_prompt_when_asked_to_expand(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    plain = create(client)["id"]
    expanded = create(client, expand_prompt=True)["id"]

    plain_request = client.get(f"/luma/generations/{plain}").json()["request"]
    expanded_request = client.get(f"/luma/generations/{expanded}").json()["request"]

    assert plain_request["expanded_prompt"] is None
    assert expanded_request["expanded_prompt"].startswith("a red kite over green hills, ")
    assert len(expanded_request["expanded_prompt"]) > len("a red kite over green hills") + 20


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user_prompt": None}, "user_prompt is required"),
        ({"user_prompt": "hi"}, "too short, minimum length is 3"),
        ({"user_prompt": "x" * 5001}, "too long, maximum length is 5000"),
        ({"model_name": "ray-v9"}, "model_name"),
        ({"resolution": "4k"}, "resolution"),
        ({"duration": "7"}, "duration"),
        ({"duration": "9", "model_name": "ray-v1"}, "ray-v1"),
        ({"aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"loop": True, "image_end_url": "https://example.com/a.png"}, "loop"),
    ],
)
def test_it_refuses_a_bad_create_with_a_400_error_envelope(tmp_path, fields, message):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    body = {"user_prompt": "a red kite over green hills", **fields}

    response = client.post("/luma/generations", json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["code"]
    assert emu.stats()["created"] == 0


def test_it_accepts_every_documented_duration_spelling_and_ignores_unknown_fields(tmp_path):
    emu = make_emulator(tmp_path, creates_per_minute=0)
    client = client_for(emu)

    for duration in ("5", "5s", "9", "9s", 5):
        create(client, duration=duration, colour_grading="warm")

    assert emu.stats()["created"] == 5


def test_it_refuses_a_body_that_is_not_a_json_object(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)

    response = client.post("/luma/generations", content=b"{not json")

    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


def test_it_answers_404_for_an_unknown_generation(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)

    response = client.get(f"/luma/generations/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_it_requires_the_api_key_when_one_is_set(tmp_path):
    emu = make_emulator(tmp_path, api_key="sk-right")
    client = client_for(emu)
    body = {"user_prompt": "a red kite over green hills"}

    missing = client.post("/luma/generations", json=body)
    wrong = client.post("/luma/generations", json=body, headers={"Authorization": "Bearer sk-no"})
    right = client.post(
        "/luma/generations", json=body, headers={"Authorization": "Bearer sk-right"}
    )

    for refused in (missing, wrong):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == 200
    assert emu.stats()["created"] == 1


def test_it_accepts_any_key_or_none_when_no_key_is_set(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)

    create(client)
    client.headers["Authorization"] = "Bearer whatever"
    create(client)

    assert emu.stats()["created"] == 2


def test_it_refuses_to_extend_a_generation_that_is_not_completed(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    clock = emu.clock
    ident = create(client)["id"]
    clock.advance(DREAM / 2)

    response = client.post(f"/luma/generations/{ident}/extend", json={"user_prompt": "more"})

    assert response.status_code == 400
    assert "completed" in response.json()["error"]["message"]


def test_it_extends_a_completed_generation_into_a_longer_one(tmp_path):
    emu = make_emulator(tmp_path, dream_seconds=0)
    client = client_for(emu)
    parent = create(client)["id"]
    client.get(f"/luma/generations/{parent}")

    extend = client.post(
        f"/luma/generations/{parent}/extend", json={"user_prompt": "the kite climbs higher"}
    )

    assert extend.status_code == 200
    assert extend.json()["state"] == "queued"
    done = client.get(f"/luma/generations/{extend.json()['id']}").json()
    assert done["state"] == "completed"
    assert done["request"]["extend_id"] == parent
    assert done["video_raw"]["duration"] == pytest.approx(10.0)


def test_it_answers_404_when_extending_an_unknown_generation(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)

    response = client.post(f"/luma/generations/{uuid.uuid4()}/extend", json={})

    assert response.status_code == 404


def test_it_answers_several_generations_from_tasks(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    first = create(client)["id"]
    second = create(client, user_prompt="a blue boat")["id"]

    response = client.post("/luma/tasks", json={"ids": [first, str(uuid.uuid4()), second]})

    assert response.status_code == 200
    assert [g["id"] for g in response.json()] == [first, second]
    assert {g["state"] for g in response.json()} == {"queued"}
    assert client.post("/luma/tasks", json={"ids": "nope"}).status_code == 400


def test_it_speaks_the_sister_vocabulary(tmp_path):
    emu = make_emulator(tmp_path, vocabulary="sister", create_as_array=True)
    client = client_for(emu)
    clock = emu.clock

    created = client.post("/luma/generations", json={"user_prompt": "a red kite"}).json()

    assert isinstance(created, list)
    assert len(created) == 1
    assert created[0]["state"] == "pending"
    ident = created[0]["id"]
    clock.advance(DREAM / 2)
    assert client.get(f"/luma/generations/{ident}").json()["state"] == "processing"


def test_it_answers_429_with_retry_after_beyond_the_generations_in_flight(tmp_path):
    emu = make_emulator(tmp_path, max_in_flight=2)
    client = client_for(emu)
    clock = emu.clock
    create(client)
    create(client)

    refused = client.post("/luma/generations", json={"user_prompt": "one too many"})

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["Retry-After"]) == DREAM
    clock.advance(DREAM)
    assert client.post("/luma/generations", json={"user_prompt": "now it fits"}).status_code == 200


def test_it_counts_the_generations_in_flight_per_api_key(tmp_path):
    emu = make_emulator(tmp_path, max_in_flight=1)
    client = client_for(emu)
    create(client)

    other = client.post(
        "/luma/generations",
        json={"user_prompt": "another team"},
        headers={"Authorization": "Bearer sk-other"},
    )

    assert other.status_code == 200


def test_it_answers_429_beyond_the_creates_per_minute(tmp_path):
    emu = make_emulator(tmp_path, dream_seconds=0, creates_per_minute=3)
    client = client_for(emu)
    clock = emu.clock
    for _ in range(3):
        create(client)
        clock.advance(10)

    refused = client.post("/luma/generations", json={"user_prompt": "too soon"})

    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) == 30
    clock.advance(30)
    assert client.post("/luma/generations", json={"user_prompt": "in time"}).status_code == 200


def test_it_fails_a_prompt_with_a_blacklisted_word(tmp_path):
    emu = make_emulator(tmp_path, blacklist=("forbidden", "blacklisted"))
    client = client_for(emu)
    clock = emu.clock
    ident = create(client, user_prompt="a Forbidden dance")["id"]
    fine = create(client, user_prompt="a forbiddenly good dance")["id"]

    clock.advance(DREAM)
    failed = client.get(f"/luma/generations/{ident}").json()

    assert failed["state"] == "failed"
    assert failed["failure_reason"] == "Contains blacklisted words"
    assert failed["video"] is None
    assert client.get(f"/luma/generations/{fine}").json()["state"] == "completed"


def test_it_keeps_its_generations_across_restarts(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    clock = emu.clock
    ident = create(client)["id"]

    again = make_emulator(tmp_path, clock=clock)
    client_again = client_for(again)
    clock.advance(DREAM)

    assert client_again.get(f"/luma/generations/{ident}").json()["state"] == "completed"


def test_it_counts_a_create_repeating_an_earlier_one_as_a_duplicate(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    create(client, duration="5")
    create(client, duration="5s", unknown_field=1)
    create(client, duration="9")

    stats = client.get("/_emulator/stats").json()

    assert stats["created"] == 3
    assert stats["duplicate_creates"] == 1


def test_it_renders_a_video_once_when_two_processes_share_the_data_dir(tmp_path):
    clock = Clock()
    first = make_emulator(tmp_path, clock=clock)
    client_a = client_for(first)
    second = make_emulator(tmp_path, clock=clock)
    client_b = client_for(second)
    ident = create(client_a)["id"]
    clock.advance(DREAM)
    answers = []

    def read(client: httpx.Client) -> None:
        answers.append(client.get(f"/luma/generations/{ident}").json())

    threads = [threading.Thread(target=read, args=(c,)) for c in (client_a, client_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a["state"] for a in answers] == ["completed", "completed"]
    assert first.stats()["renders"] == 1
    assert client_b.get(answers[0]["video"]["download_url"]).status_code == 200


def test_it_answers_405_for_a_wrong_method_and_404_for_an_unknown_path(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)

    assert client.delete("/luma/generations").status_code == 405
    assert client.get("/luma/nothing").status_code == 404
    assert client.get("/files/../emulator.sqlite3").status_code == 404


def test_it_reads_its_settings_from_the_environment(tmp_path):
    environ = {
        "LUMA_EMULATOR_DREAM_SECONDS": "0.5",
        "LUMA_EMULATOR_API_KEY": "sk-env",
        "LUMA_EMULATOR_VOCABULARY": "sister",
        "LUMA_EMULATOR_FAULTS": '{"endpoints": {"get": {"latency": 0.01}}}',
        "LUMA_EMULATOR_SEED": "42",
        "LUMA_EMULATOR_MAX_IN_FLIGHT": "3",
        "LUMA_EMULATOR_CREATES_PER_MINUTE": "7",
        "LUMA_EMULATOR_BLACKLIST": "foo, bar",
    }

    emu = Emulator.from_env(tmp_path / "env", environ=environ)

    assert emu.dream_seconds == 0.5
    assert emu.api_key == "sk-env"
    assert (emu.vocabulary, emu.create_as_array) == ("sister", True)
    assert emu.faults.config == {"endpoints": {"get": {"latency": 0.01}}}
    assert emu.seed == 42
    assert (emu.max_in_flight, emu.creates_per_minute) == (3, 7)
    assert emu.blacklist == ("foo", "bar")


def test_it_uses_its_defaults_without_environment(tmp_path):
    emu = Emulator.from_env(tmp_path / "env", environ={})

    assert emu.dream_seconds == 20.0
    assert emu.api_key is None
    assert (emu.vocabulary, emu.create_as_array) == ("luma", False)
    assert (emu.max_in_flight, emu.creates_per_minute) == (10, 20)
    assert emu.blacklist == ("blacklisted",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LUMA_EMULATOR_DREAM_SECONDS", "soon"),
        ("LUMA_EMULATOR_DREAM_SECONDS", "-1"),
        ("LUMA_EMULATOR_VOCABULARY", "klingon"),
        ("LUMA_EMULATOR_FAULTS", "{broken"),
        ("LUMA_EMULATOR_FAULTS", '{"endpoints": {"nope": {}}}'),
        ("LUMA_EMULATOR_FAULTS", "/no/such/faults.json"),
        ("LUMA_EMULATOR_SEED", "1.5"),
        ("LUMA_EMULATOR_MAX_IN_FLIGHT", "-2"),
        ("LUMA_EMULATOR_CREATES_PER_MINUTE", "many"),
    ],
)
def test_it_refuses_a_bad_environment_value_naming_the_variable(tmp_path, name, value):
    with pytest.raises(ValueError, match=name):
        Emulator.from_env(tmp_path / "env", environ={name: value})


def test_the_management_command_serves_an_emulator_on_the_data_dir(tmp_path, monkeypatch, settings):
    calls = []
    monkeypatch.setattr(command, "serve", lambda *args: calls.append(args))
    monkeypatch.setenv("LUMA_EMULATOR_DREAM_SECONDS", "3")
    settings.DATA_DIR = tmp_path

    call_command("luma_emulator", "--port", "9123")

    [(emu, host, port)] = calls
    assert (emu.data_dir, emu.dream_seconds) == (tmp_path / "emulator", 3.0)
    assert (host, port) == ("127.0.0.1", 9123)


def test_the_management_command_refuses_a_bad_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(command, "serve", lambda *args: None)
    monkeypatch.setenv("LUMA_EMULATOR_MAX_IN_FLIGHT", "lots")

    with pytest.raises(CommandError, match="LUMA_EMULATOR_MAX_IN_FLIGHT"):
        call_command("luma_emulator", "--data-dir", str(tmp_path))
