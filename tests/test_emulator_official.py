"""The emulator's official dialect (/dream-machine/v1/*), driven in-process."""

from __future__ import annotations

import uuid

import httpx
import pytest

from luma_emulator import Emulator
from luma_emulator.testing import Clock, data_uri, probe

DREAM = 10.0
BASE = "http://luma-emulator/dream-machine/v1"


def make_emulator(tmp_path, **options) -> Emulator:
    clock = Clock()
    options.setdefault("dream_seconds", DREAM)
    return Emulator(tmp_path / "emulator", clock=clock, **options)


def client_for(emu: Emulator) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=emu), base_url=BASE)


def create(client: httpx.Client, **fields) -> dict:
    body = {"model": "ray-2", "prompt": "a lighthouse at dusk", "resolution": "540p", **fields}
    response = client.post("/generations/video", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_it_answers_a_create_with_201_and_a_queued_generation(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)

    generation = create(client, aspect_ratio="1:1", duration="9s", callback_url="http://x/cb")

    uuid.UUID(generation["id"])
    assert generation["generation_type"] == "video"
    assert generation["state"] == "queued"
    assert generation["failure_reason"] is None
    assert generation["assets"] is None
    assert generation["model"] == "ray-2"
    assert generation["request"]["prompt"] == "a lighthouse at dusk"
    assert generation["request"]["aspect_ratio"] == "1:1"
    assert generation["request"]["duration"] == "9s"
    assert generation["request"]["callback_url"] == "http://x/cb"


def test_it_accepts_the_older_create_path(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)

    response = client.post("/generations", json={"model": "ray-flash-2", "prompt": "a fox"})

    assert response.status_code == 201
    assert response.json()["model"] == "ray-flash-2"


def test_it_completes_a_generation_with_its_assets(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    clock = emu.clock
    ident = create(client)["id"]
    clock.advance(DREAM / 2)
    assert client.get(f"/generations/{ident}").json()["state"] == "dreaming"
    clock.advance(DREAM / 2)

    generation = client.get(f"/generations/{ident}").json()

    assert generation["state"] == "completed"
    assert generation["assets"]["video"] == f"http://luma-emulator/files/{ident}.mp4"
    assert generation["assets"]["image"] == f"http://luma-emulator/files/{ident}.jpg"
    video = probe(client.get(generation["assets"]["video"]).content)
    assert (video.codec, video.width, video.height) == ("h264", 960, 540)


def test_it_lists_the_generations_newest_first_a_page_at_a_time(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    clock = emu.clock
    idents = []
    for n in range(3):
        idents.append(create(client, prompt=f"a lighthouse number {n}")["id"])
        clock.advance(1)

    first = client.get("/generations", params={"limit": 2}).json()
    second = client.get("/generations", params={"limit": 2, "offset": 2}).json()

    assert [g["id"] for g in first["generations"]] == idents[::-1][:2]
    assert (first["has_more"], first["count"], first["limit"], first["offset"]) == (True, 2, 2, 0)
    assert [g["id"] for g in second["generations"]] == idents[:1]
    assert (second["has_more"], second["count"]) == (False, 1)
    assert client.get("/generations", params={"limit": "x"}).status_code == 422


def test_it_lists_only_the_callers_generations(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    create(client)

    other = client.get("/generations", headers={"Authorization": "Bearer sk-other"}).json()

    assert other["generations"] == []


def test_it_deletes_a_generation_and_its_files(tmp_path):
    emu = make_emulator(tmp_path, dream_seconds=0)
    client = client_for(emu)
    ident = create(client)["id"]
    video_url = client.get(f"/generations/{ident}").json()["assets"]["video"]

    deleted = client.delete(f"/generations/{ident}")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get(f"/generations/{ident}").status_code == 404
    assert client.get(video_url).status_code == 404
    assert client.delete(f"/generations/{ident}").status_code == 404
    assert emu.stats()["deleted"] == 1


def test_it_answers_concepts_credits_and_ping(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    before = client.get("/credits").json()["credit_balance"]
    create(client, resolution="720p")

    concepts = client.get("/generations/concepts/list").json()
    after = client.get("/credits").json()["credit_balance"]

    assert "pan_left" in concepts
    assert "dolly_zoom" in concepts
    assert before - after == pytest.approx(175, abs=1)  # 720p, 5 s, 16:9 on ray-2: $1.75
    assert client.get("/ping").json() == {"message": "pong"}


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"prompt": None}, "Prompt is required"),
        ({"prompt": "hi"}, "Prompt is too short, minimum length is 3 characters"),
        ({"prompt": "x" * 5001}, "Prompt is too long, maximum length is 5000 characters"),
        ({"keyframes": {}}, "No keyframes provided"),
        (
            {"model": "ray-1-6", "duration": "5s", "resolution": None},
            "Duration is not supported in the Ray 1.6 API",
        ),
        (
            {"model": "ray-1-6", "resolution": "720p"},
            "Resolution is not supported in the Ray 1.6 API",
        ),
        (
            {
                "loop": True,
                "keyframes": {"frame1": {"type": "image", "url": "https://example.com/a.png"}},
            },
            "Loop is not supported for end frame",
        ),
        ({"duration": "7s"}, "duration"),
        ({"resolution": "8k"}, "resolution"),
        ({"concepts": [{"key": "barrel_roll"}]}, "Unknown concept: barrel_roll"),
    ],
)
def test_it_refuses_a_business_error_with_400_and_luma_message(tmp_path, fields, detail):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    body = {"model": "ray-2", "prompt": "a lighthouse at dusk", **fields}

    response = client.post("/generations/video", json=body)

    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)
    assert detail in response.json()["detail"]
    assert emu.stats()["created"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "a lighthouse"}, "model"),
        ({"model": "ray-9", "prompt": "a lighthouse"}, "model"),
        ({"model": "ray-2", "prompt": "a lighthouse", "aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"model": "ray-2", "prompt": "a lighthouse", "loop": "yes"}, "loop"),
        ({"model": "ray-2", "keyframes": {"frame0": {"type": "video", "url": "x"}}}, "keyframes"),
        ({"model": "ray-2", "keyframes": {"frame0": {"type": "image"}}}, "keyframes"),
    ],
)
def test_it_refuses_a_schema_error_with_422_and_a_list_of_details(tmp_path, body, field):
    emu = make_emulator(tmp_path)
    client = client_for(emu)

    response = client.post("/generations/video", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert detail[0]["loc"][:2] == ["body", field]
    assert detail[0]["msg"]


def test_it_refuses_a_body_that_is_not_json_with_422(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)

    response = client.post("/generations/video", content=b"model=ray-2")

    assert response.status_code == 422


@pytest.mark.parametrize(
    ("frames", "detail"),
    [
        (("generation", "generation"), "Loop is not supported for interpolation"),
        ((None, "generation"), "Loop is not supported for reverse extend"),
        (("image", "generation"), "Loop is not supported for two keyframes"),
        (("image", "image"), "Loop is not supported for end frame"),
    ],
)
def test_it_refuses_a_loop_it_cannot_make(tmp_path, frames, detail):
    emu = make_emulator(tmp_path, dream_seconds=0)
    client = client_for(emu)
    parent = create(client)["id"]
    keyframes = {}
    for name, kind in zip(("frame0", "frame1"), frames, strict=True):
        if kind == "image":
            keyframes[name] = {"type": "image", "url": data_uri((10, 20, 30))}
        elif kind == "generation":
            keyframes[name] = {"type": "generation", "id": parent}

    response = client.post(
        "/generations/video", json={"model": "ray-2", "loop": True, "keyframes": keyframes}
    )

    assert response.status_code == 400
    assert response.json()["detail"] == detail


def test_it_makes_a_prompt_optional_when_keyframes_are_given(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    frame = {"type": "image", "url": data_uri((200, 10, 10))}

    response = client.post(
        "/generations/video", json={"model": "ray-2", "keyframes": {"frame0": frame}}
    )

    assert response.status_code == 201
    assert response.json()["request"]["keyframes"]["frame0"] == frame


def test_it_refuses_to_extend_a_generation_that_is_unknown_or_not_completed(tmp_path):
    emu = make_emulator(tmp_path)
    client = client_for(emu)
    clock = emu.clock
    parent = create(client)["id"]

    def extend(ident: str) -> httpx.Response:
        frame0 = {"type": "generation", "id": ident}
        return client.post(
            "/generations/video", json={"model": "ray-2", "keyframes": {"frame0": frame0}}
        )

    assert extend(parent).status_code == 400
    assert "not completed" in extend(parent).json()["detail"]
    assert "not found" in extend(str(uuid.uuid4())).json()["detail"]
    clock.advance(DREAM)
    assert extend(parent).status_code == 201


def test_it_answers_errors_as_detail_strings(tmp_path):
    emu = make_emulator(tmp_path, api_key="sk-right")
    client = client_for(emu)

    unauthorised = client.get("/ping")
    client.headers["Authorization"] = "Bearer sk-right"
    missing = client.get(f"/generations/{uuid.uuid4()}")

    assert unauthorised.status_code == 401
    assert isinstance(unauthorised.json()["detail"], str)
    assert missing.status_code == 404
    assert "not found" in missing.json()["detail"]


def test_it_answers_429_in_its_own_shape(tmp_path):
    emu = make_emulator(tmp_path, max_in_flight=1)
    client = client_for(emu)
    create(client)

    refused = client.post("/generations/video", json={"model": "ray-2", "prompt": "one more"})

    assert refused.status_code == 429
    assert "limit" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1


def test_it_reads_a_generation_made_in_the_other_dialect(tmp_path):
    emu = make_emulator(tmp_path, dream_seconds=0)
    client = client_for(emu)
    router = httpx.Client(transport=httpx.WSGITransport(app=emu), base_url="http://luma-emulator")
    ident = router.post(
        "/luma/generations", json={"user_prompt": "a shared one", "model_name": "ray-v2"}
    ).json()["id"]

    generation = client.get(f"/generations/{ident}").json()

    assert generation["state"] == "completed"
    assert generation["model"] == "ray-2"
    assert generation["request"]["prompt"] == "a shared one"
    assert generation["assets"]["video"].endswith(f"{ident}.mp4")
