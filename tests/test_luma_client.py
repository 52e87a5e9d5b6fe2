"""The client's handling of what routers really answer, with the transport swapped for a
MockTransport where a shape is hard to get from the emulator on purpose."""

from __future__ import annotations

import json

import httpx
import pytest

from generations import luma


def client_for(handler, dialect: str = "router", api_key: str = "sk-test") -> luma.LumaClient:
    http = httpx.Client(transport=httpx.MockTransport(handler), base_url="https://router.test")
    return luma.LumaClient(http, api_key=api_key, dialect=dialect)


def answer(status: int = 200, body=None, headers=None):
    def handler(request: httpx.Request) -> httpx.Response:
        handler.requests.append(request)
        return httpx.Response(status, json=body, headers=headers)

    handler.requests = []
    return handler


def test_it_creates_with_bearer_auth_and_the_router_body():
    handler = answer(body={"id": "g1", "state": "queued", "created_at": "2024-03-01T12:00:00Z"})
    upstream = client_for(handler).create(
        luma.VideoRequest(
            prompt="A fox", model_name="ray-v2", duration="5", resolution="720p", expand_prompt=True
        )
    )
    request = handler.requests[0]
    assert (request.method, request.url.path) == ("POST", "/luma/generations")
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert json.loads(request.content) == {
        "user_prompt": "A fox", "model_name": "ray-v2", "duration": "5", "resolution": "720p",
        "expand_prompt": True,
    }  # fmt: skip
    assert (upstream.id, upstream.state) == ("g1", "queued")


def test_it_accepts_a_one_element_array_from_create():
    handler = answer(body=[{"id": "g2", "state": "pending"}])
    upstream = client_for(handler).create(luma.VideoRequest(prompt="A fox"))
    assert (upstream.id, upstream.state) == ("g2", "queued")


@pytest.mark.parametrize(
    ("word", "ours"),
    [("queued", "queued"), ("pending", "queued"), ("dreaming", "dreaming"),
     ("processing", "dreaming"), ("completed", "completed"), ("failed", "failed"),
     ("warming_up", "dreaming"), (None, "dreaming")],
)  # fmt: skip
def test_it_understands_both_state_vocabularies_and_treats_unknown_words_as_in_progress(word, ours):
    upstream = client_for(answer(body={"id": "g", "state": word})).get("g")
    assert upstream.state == ours


def test_it_prefers_download_url_and_falls_back_to_url():
    both = {"id": "g", "state": "completed", "video": {"url": "https://cdn/wm.mp4",
            "download_url": "https://cdn/clean.mp4"}}  # fmt: skip
    assert client_for(answer(body=both)).get("g").video_url == "https://cdn/clean.mp4"
    only_url = {"id": "g", "state": "completed", "video": {"url": "https://cdn/wm.mp4"}}
    assert client_for(answer(body=only_url)).get("g").video_url == "https://cdn/wm.mp4"
    no_video = {"id": "g", "state": "completed", "video": None}
    assert client_for(answer(body=no_video)).get("g").video_url == ""


def test_it_extends_through_the_router_endpoint():
    handler = answer(body={"id": "g3", "state": "queued"})
    client_for(handler).extend("g1", luma.VideoRequest(prompt="Keep going"))
    assert handler.requests[0].url.path == "/luma/generations/g1/extend"


def test_it_maps_the_official_dialect():
    handler = answer(201, {"id": "u1", "state": "queued", "assets": None})
    client = client_for(handler, dialect="official")
    client.create(luma.VideoRequest(prompt="A fox", model_name="ray-v2", duration="5",
                                    resolution="720p", image_url="https://img/a.jpg"))  # fmt: skip
    assert handler.requests[0].url.path == "/generations/video"
    assert json.loads(handler.requests[0].content) == {
        "model": "ray-2", "prompt": "A fox", "duration": "5s", "resolution": "720p",
        "keyframes": {"frame0": {"type": "image", "url": "https://img/a.jpg"}},
    }  # fmt: skip
    client.create(luma.VideoRequest(prompt="A fox", model_name="ray-v1", duration="5"))
    assert json.loads(handler.requests[1].content) == {"model": "ray-1-6", "prompt": "A fox"}
    client.extend("u0", luma.VideoRequest(prompt="More"))
    assert json.loads(handler.requests[2].content)["keyframes"] == {
        "frame0": {"type": "generation", "id": "u0"}
    }
    done = {"id": "u1", "state": "completed", "assets": {"video": "https://cdn/v.mp4"}}
    assert (
        client_for(answer(body=done), dialect="official").get("u1").video_url == "https://cdn/v.mp4"
    )


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (400, {"error": {"message": "prompt too short", "type": "invalid_request_error"}},
         luma.PermanentError, "prompt too short"),
        (401, {"error": {"message": "bad key", "code": "invalid_api_key"}}, luma.PermanentError, "bad key"),
        (403, {"error": {"message": "no quota", "code": "insufficient_quota"}}, luma.PermanentError, "no quota"),
        (404, {"detail": "Generation not found"}, luma.NotFound, "Generation not found"),
        (429, {"error": {"message": "slow down", "code": "rate_limit_exceeded"}}, luma.TransientError, "slow down"),
        (500, None, luma.TransientError, "HTTP 500"),
        (502, {"error": {"message": "safe to retry"}}, luma.TransientError, "safe to retry"),
        (503, {"detail": "maintenance"}, luma.TransientError, "maintenance"),
    ],
)  # fmt: skip
def test_it_sorts_errors_by_what_the_caller_may_do(status, body, kind, message):
    with pytest.raises(kind) as caught:
        client_for(answer(status, body)).create(luma.VideoRequest(prompt="A fox"))
    assert caught.value.status == status
    assert caught.value.message == message


def test_it_reads_retry_after():
    with pytest.raises(luma.TransientError) as caught:
        client_for(answer(429, {}, {"Retry-After": "7"})).create(luma.VideoRequest(prompt="A fox"))
    assert caught.value.retry_after == 7.0


def test_a_refused_connection_is_transient_but_a_timeout_after_sending_is_ambiguous():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    def hang(request):
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(luma.TransientError):
        client_for(refuse).create(luma.VideoRequest(prompt="A fox"))
    with pytest.raises(luma.AmbiguousError):
        client_for(hang).create(luma.VideoRequest(prompt="A fox"))
    # Reading is always safe to repeat.
    with pytest.raises(luma.TransientError):
        client_for(hang).get("g1")


def test_malformed_json_is_ambiguous_for_a_create():
    def garbage(request):
        return httpx.Response(200, content=b'{"id": "g1", "sta')

    with pytest.raises(luma.AmbiguousError):
        client_for(garbage).create(luma.VideoRequest(prompt="A fox"))


def test_it_downloads_atomically_without_sending_the_api_key(tmp_path):
    seen = []

    def cdn(request):
        seen.append(request)
        return httpx.Response(200, content=b"\x00\x00\x00\x18ftypmp42" + b"x" * 1000,
                              headers={"Content-Type": "video/mp4"})  # fmt: skip

    size = client_for(cdn).download("https://cdn.test/v.mp4", tmp_path / "v.mp4", max_bytes=10_000)
    assert size == 1012 and (tmp_path / "v.mp4").read_bytes()[4:8] == b"ftyp"
    assert "Authorization" not in seen[0].headers
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(200, content=b"<html>", headers={"Content-Type": "text/html"}), luma.PermanentError),
        (httpx.Response(200, content=b"x" * 5000, headers={"Content-Type": "video/mp4"}), luma.PermanentError),
        (httpx.Response(403, content=b"expired"), luma.PermanentError),
        (httpx.Response(503, content=b"busy"), luma.TransientError),
    ],
)  # fmt: skip
def test_a_failed_download_leaves_no_file(tmp_path, response, error):
    with pytest.raises(error):
        client_for(lambda request: response).download(
            "https://cdn.test/v.mp4", tmp_path / "v.mp4", max_bytes=1000
        )
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_download_leaves_no_file(tmp_path):
    def broken_stream():
        yield b"x" * 100
        raise httpx.ReadError("connection reset")

    def cdn(request):
        return httpx.Response(200, content=broken_stream(), headers={"Content-Type": "video/mp4"})

    with pytest.raises(luma.TransientError):
        client_for(cdn).download("https://cdn.test/v.mp4", tmp_path / "v.mp4", max_bytes=10_000)
    assert list(tmp_path.iterdir()) == []
