"""Faults on demand, account limits' neighbours, admin endpoints, callbacks, and serve()."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from luma_emulator import ConnectionDropped, Emulator, make_server
from luma_emulator.testing import CallbackReceiver, Clock

DREAM = 10.0
PROMPT = {"user_prompt": "a storm over the sea"}


def make_emulator(tmp_path, faults=None, **options) -> Emulator:
    clock = Clock()
    options.setdefault("dream_seconds", DREAM)
    options.setdefault("seed", 1)
    return Emulator(tmp_path / "emulator", clock=clock, faults=faults, **options)


def client_for(emu: Emulator) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=emu), base_url="http://luma-emulator")


def on(endpoint: str, **settings) -> dict:
    return {"endpoints": {endpoint: settings}}


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "Internal server error"),
        (502, "upstream result could not be fetched, safe to retry"),
        (503, "maintenance"),
    ],
)
def test_it_answers_an_injected_server_error_without_creating(tmp_path, status, message):
    emu = make_emulator(tmp_path, on("create", errors={str(status): 1.0}))
    client = client_for(emu)

    response = client.post("/luma/generations", json=PROMPT)

    assert response.status_code == status
    assert message in response.json()["error"]["message"]
    assert emu.stats()["created"] == 0
    assert emu.stats()["faults"] == {str(status): 1}


def test_it_answers_an_injected_error_in_the_official_shape(tmp_path):
    emu = make_emulator(tmp_path, on("*", errors={"503": 1.0}, retry_after=4))
    client = client_for(emu)

    response = client.get("/dream-machine/v1/ping")

    assert response.status_code == 503
    assert isinstance(response.json()["detail"], str)
    assert response.headers["Retry-After"] == "4"


def test_it_answers_an_injected_429_with_retry_after(tmp_path):
    emu = make_emulator(tmp_path, on("get", rate_limit=1.0, retry_after=7))
    client = client_for(emu)
    ident = client.post("/luma/generations", json=PROMPT).json()["id"]

    response = client.get(f"/luma/generations/{ident}")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.headers["Retry-After"] == "7"


def test_it_drops_the_connection_after_creating_the_generation(tmp_path):
    emu = make_emulator(tmp_path, on("create", drop=1.0))
    client = client_for(emu)

    with pytest.raises(httpx.RemoteProtocolError) as raised:
        client.post("/luma/generations", json=PROMPT)

    assert isinstance(raised.value, ConnectionDropped)
    assert emu.stats()["created"] == 1
    assert emu.stats()["faults"] == {"drop": 1}


def test_it_times_out_a_hanging_create_in_process_after_creating(tmp_path):
    emu = make_emulator(tmp_path, on("create", hang=1.0, hang_seconds=600))
    client = client_for(emu)
    started = time.monotonic()

    with pytest.raises(httpx.ReadTimeout):
        client.post("/luma/generations", json=PROMPT)

    assert time.monotonic() - started < 5
    assert emu.stats()["created"] == 1


def test_it_sends_malformed_json(tmp_path):
    emu = make_emulator(tmp_path, on("create", malformed=1.0))
    client = client_for(emu)

    response = client.post("/luma/generations", json=PROMPT)

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert emu.stats()["created"] == 1


def test_it_cuts_a_malformed_download_short(tmp_path):
    emu = make_emulator(tmp_path, on("download", malformed=1.0), dream_seconds=0)
    client = client_for(emu)
    body = {**PROMPT, "resolution": "540p"}
    ident = client.post("/luma/generations", json=body).json()["id"]
    video = client.get(f"/luma/generations/{ident}").json()["video"]["download_url"]

    response = client.get(video)

    assert response.status_code == 200
    assert len(response.content) == int(response.headers["Content-Length"])
    assert len(response.content) < (tmp_path / "emulator" / "files" / f"{ident}.mp4").stat().st_size


def test_it_adds_latency(tmp_path):
    emu = make_emulator(tmp_path, on("*", latency=0.2))
    client = client_for(emu)
    started = time.monotonic()

    response = client.get("/dream-machine/v1/ping")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


def test_it_answers_normally_where_no_fault_is_set(tmp_path):
    emu = make_emulator(tmp_path, on("create", errors={"500": 1.0}))
    client = client_for(emu)
    client.post("/luma/generations", json=PROMPT)

    assert client.get("/dream-machine/v1/ping").status_code == 200


def test_it_draws_the_same_faults_from_the_same_seed(tmp_path):
    faults = {"seed": 3, **on("get", errors={"500": 0.5})}

    def statuses(name: str) -> list[int]:
        emu = make_emulator(tmp_path / name, faults)
        client = client_for(emu)
        return [client.get("/luma/generations/nothing").status_code for _ in range(20)]

    first, second = statuses("a"), statuses("b")

    assert first == second
    assert set(first) == {404, 500}


def test_it_reads_completed_without_a_video_for_one_poll(tmp_path):
    emu = make_emulator(tmp_path, {"generations": {"incomplete": 1.0}})
    client = client_for(emu)
    clock = emu.clock
    ident = client.post("/luma/generations", json=PROMPT).json()["id"]
    clock.advance(DREAM)

    first = client.get(f"/luma/generations/{ident}").json()
    second = client.get(f"/luma/generations/{ident}").json()

    assert (first["state"], first["video"]) == ("completed", None)
    assert second["state"] == "completed"
    assert second["video"]["download_url"]


def test_it_fails_a_generation_half_way_with_the_given_reason(tmp_path):
    faults = {"generations": {"fail": 1.0, "fail_reason": "Frame moderation failed"}}
    emu = make_emulator(tmp_path, faults)
    client = client_for(emu)
    clock = emu.clock
    ident = client.post("/luma/generations", json=PROMPT).json()["id"]

    clock.advance(DREAM * 0.3)
    assert client.get(f"/luma/generations/{ident}").json()["state"] == "dreaming"
    clock.advance(DREAM * 0.3)
    failed = client.get(f"/luma/generations/{ident}").json()

    assert failed["state"] == "failed"
    assert failed["failure_reason"] == "Frame moderation failed"
    assert emu.stats()["failed"] == 1


def test_it_keeps_a_stuck_generation_dreaming_forever(tmp_path):
    emu = make_emulator(tmp_path, {"generations": {"stuck": 1.0}})
    client = client_for(emu)
    clock = emu.clock
    ident = client.post("/luma/generations", json=PROMPT).json()["id"]

    clock.advance(DREAM * 100)

    assert client.get(f"/luma/generations/{ident}").json()["state"] == "dreaming"
    assert emu.stats()["in_flight"] == 1


def test_it_forgets_a_generation_some_time_after_it_completed(tmp_path):
    faults = {"generations": {"forget": 1.0, "forget_after": 5}}
    emu = make_emulator(tmp_path, faults)
    client = client_for(emu)
    clock = emu.clock
    ident = client.post("/luma/generations", json=PROMPT).json()["id"]

    clock.advance(DREAM + 4)
    assert client.get(f"/luma/generations/{ident}").json()["state"] == "completed"
    clock.advance(1)

    assert client.get(f"/luma/generations/{ident}").status_code == 404


def test_it_applies_generation_faults_only_to_matching_prompts(tmp_path):
    faults = {"generations": {"match": "FLAKY", "fail": 1.0}}
    emu = make_emulator(tmp_path, faults)
    client = client_for(emu)
    clock = emu.clock
    flaky = client.post("/luma/generations", json={"user_prompt": "a flaky one"}).json()["id"]
    fine = client.post("/luma/generations", json={"user_prompt": "a steady one"}).json()["id"]
    clock.advance(DREAM)

    assert client.get(f"/luma/generations/{flaky}").json()["state"] == "failed"
    assert client.get(f"/luma/generations/{fine}").json()["state"] == "completed"


@pytest.mark.parametrize(
    "faults",
    [
        {"endpoints": {"create": {"errors": {"404": 0.1}}}},
        {"endpoints": {"create": {"drop": 1.5}}},
        {"endpoints": {"create": {"drop": 0.6, "hang": 0.6}}},
        {"endpoints": {"creat": {}}},
        {"endpoints": {"get": {"lag": 1}}},
        {"generations": {"stuck": "often"}},
        {"seeds": 1},
        [],
    ],
)
def test_it_refuses_a_bad_fault_config(tmp_path, faults):
    with pytest.raises(ValueError):
        Emulator(tmp_path / "emulator", faults=faults)


def test_it_replaces_faults_and_reports_stats_through_its_admin_endpoints(tmp_path):
    emu = make_emulator(tmp_path, api_key="sk-x")
    client = client_for(emu)
    auth = {"Authorization": "Bearer sk-x"}

    replaced = client.put("/_emulator/faults", json=on("create", errors={"502": 1.0}))
    refused = client.put("/_emulator/faults", json={"endpoints": {"nope": {}}})
    answer = client.post("/luma/generations", json=PROMPT, headers=auth)
    client.put("/_emulator/faults", json={})
    client.post("/luma/generations", json=PROMPT, headers=auth)
    stats = client.get("/_emulator/stats").json()

    assert replaced.status_code == 200
    assert client.get("/_emulator/faults").json() == {}
    assert refused.status_code == 400
    assert "nope" in refused.json()["error"]["message"]
    assert answer.status_code == 502
    assert stats["created"] == 1
    assert stats["requests"] == {"create": 2}
    assert stats["faults"] == {"502": 1}


def test_it_forgets_everything_on_reset(tmp_path):
    emu = make_emulator(tmp_path, dream_seconds=0)
    client = client_for(emu)
    ident = client.post("/luma/generations", json=PROMPT).json()["id"]
    client.get(f"/luma/generations/{ident}")

    assert client.post("/_emulator/reset").json() == {"reset": True}

    assert client.get(f"/luma/generations/{ident}").status_code == 404
    assert emu.stats()["created"] == 0
    assert list((tmp_path / "emulator" / "files").iterdir()) == []


def test_it_reads_faults_from_a_json_file_named_in_the_environment(tmp_path):
    path = tmp_path / "faults.json"
    path.write_text(json.dumps(on("create", errors={"500": 1.0})))

    emu = Emulator.from_env(tmp_path / "emulator", environ={"LUMA_EMULATOR_FAULTS": str(path)})

    client = httpx.Client(transport=httpx.WSGITransport(app=emu), base_url="http://e")
    assert client.post("/luma/generations", json=PROMPT).status_code == 500


# --- callbacks ---------------------------------------------------------------------------


def test_it_calls_the_notify_hook_on_dreaming_and_completed(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    clock = emu.clock
    with CallbackReceiver() as hook:
        body = {**PROMPT, "resolution": "540p", "notify_hook": hook.url}
        ident = client.post("/luma/generations", json=body).json()["id"]
        emu.run_due()
        clock.advance(DREAM / 2)
        emu.run_due()
        clock.advance(DREAM / 2)
        emu.run_due()
        emu.run_due()

    assert [c["body"]["state"] for c in hook.received] == ["dreaming", "completed"]
    assert {c["body"]["id"] for c in hook.received} == {ident}
    assert hook.received[1]["body"]["video"]["download_url"].endswith(f"{ident}.mp4")
    assert emu.stats()["callbacks_sent"] == 2


def test_it_retries_a_callback_that_is_refused(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    clock = emu.clock
    with CallbackReceiver(statuses=[500, 503, 200]) as hook:
        body = {"model": "ray-2", "prompt": "a storm", "callback_url": hook.url}
        client.post("/dream-machine/v1/generations/video", json=body)
        clock.advance(DREAM / 2)
        emu.run_due()

    assert [c["status"] for c in hook.received] == [500, 503, 200]
    assert hook.received[-1]["body"]["state"] == "dreaming"
    assert hook.received[-1]["body"]["generation_type"] == "video"


def test_it_gives_up_on_a_callback_after_three_retries(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    clock = emu.clock
    with CallbackReceiver(statuses=[500] * 10) as hook:
        body = {**PROMPT, "notify_hook": hook.url, "user_prompt": "a blacklisted storm"}
        client.post("/luma/generations", json=body)
        clock.advance(DREAM)
        emu.run_due()

    assert len(hook.received) == 4
    assert hook.received[0]["body"]["state"] == "failed"
    assert emu.stats()["callbacks_failed"] == 1


def test_it_sends_due_callbacks_lazily_when_next_called_in_process(tmp_path):
    emu = make_emulator(tmp_path, dream_seconds=0)
    client = client_for(emu)
    with CallbackReceiver() as hook:
        body = {**PROMPT, "resolution": "540p", "notify_hook": hook.url}
        client.post("/luma/generations", json=body)
        client.get("/dream-machine/v1/ping")
        deadline = time.monotonic() + 20
        while len(hook.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    assert [c["body"]["state"] for c in hook.received] == ["dreaming", "completed"]


# --- serve() -----------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path):
    emu = Emulator(tmp_path / "served", dream_seconds=0.5, seed=1)
    server = make_server(emu, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    emu.start_background(interval=0.05)
    yield emu, server.base_url
    emu.stop_background()
    server.shutdown()
    server.server_close()


def test_it_closes_the_socket_without_answering_under_serve(served):
    emu, base = served
    emu.set_faults(on("create", drop=1.0))

    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{base}/luma/generations", json=PROMPT, timeout=5)

    assert emu.stats()["created"] == 1


def test_it_hangs_past_the_client_timeout_under_serve(served):
    emu, base = served
    httpx.put(f"{base}/_emulator/faults", json=on("get", hang=1.0, hang_seconds=2))

    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{base}/luma/generations/some-id", timeout=0.3)

    assert emu.stats()["faults"] == {"hang": 1}


def test_it_renders_ahead_and_calls_back_from_its_background_thread(served):
    emu, base = served
    with CallbackReceiver() as hook:
        body = {**PROMPT, "resolution": "540p", "notify_hook": hook.url}
        ident = httpx.post(f"{base}/luma/generations", json=body).json()["id"]
        deadline = time.monotonic() + 20
        while len(hook.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    assert [c["body"]["state"] for c in hook.received] == ["dreaming", "completed"]
    done = httpx.get(f"{base}/luma/generations/{ident}").json()
    assert done["video"]["download_url"].startswith(base)
    assert httpx.get(done["video"]["download_url"]).headers["content-type"] == "video/mp4"
    assert emu.stats()["renders"] == 1
