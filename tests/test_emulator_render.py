"""What the emulator's videos look like: real H.264 files whose frames follow the request."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from luma_emulator import Emulator
from luma_emulator.testing import (
    Clock,
    array_data_uri,
    closed_port,
    data_uri,
    image_bytes,
    mean_colour,
    probe,
    serve_bytes,
)

RED, BLUE, GREEN = (210, 30, 40), (20, 40, 200), (30, 180, 60)


@pytest.fixture
def emu(tmp_path):
    return Emulator(tmp_path / "emulator", dream_seconds=0, clock=Clock(), creates_per_minute=0)


@pytest.fixture
def client(emu):
    return httpx.Client(transport=httpx.WSGITransport(app=emu), base_url="http://luma-emulator")


def router_video(client: httpx.Client, **fields):
    """Create through the router, read it (rendering it), and decode its video."""
    body = {"user_prompt": "a paper boat on a pond", "resolution": "540p", **fields}
    created = client.post("/luma/generations", json=body)
    assert created.status_code == 200, created.text
    generation = client.get(f"/luma/generations/{created.json()['id']}").json()
    assert generation["state"] == "completed", generation
    return generation, probe(client.get(generation["video"]["download_url"]).content)


def official(client: httpx.Client, **fields) -> dict:
    body = {"model": "ray-2", "resolution": "540p", **fields}
    created = client.post("/dream-machine/v1/generations/video", json=body)
    assert created.status_code == 201, created.text
    return client.get(f"/dream-machine/v1/generations/{created.json()['id']}").json()


def close(a: np.ndarray, b: np.ndarray, tolerance: float = 12) -> bool:
    return bool(np.abs(mean_colour(a) - mean_colour(b)).max() < tolerance)


def test_it_renders_text_to_video_as_h264_yuv420p_at_24_fps(client):
    video = router_video(client)[1]

    assert (video.codec, video.pix_fmt, video.fps) == ("h264", "yuv420p", 24)
    assert (video.width, video.height) == (960, 540)
    assert len(video.frames) == 120
    assert video.duration == pytest.approx(5.0)
    assert not np.array_equal(video.first, video.last)  # the text moves


@pytest.mark.parametrize(
    ("aspect_ratio", "size"),
    [("16:9", (960, 540)), ("1:1", (540, 540)), ("9:16", (304, 540)), ("21:9", (1260, 540))],
)
def test_it_sizes_the_video_by_resolution_and_aspect_ratio(client, aspect_ratio, size):
    generation, video = router_video(client, aspect_ratio=aspect_ratio, duration="5")

    assert (video.width, video.height) == size
    assert (generation["video"]["width"], generation["video"]["height"]) == size


def test_it_renders_nine_seconds_when_asked(client):
    generation, video = router_video(client, duration="9s")

    assert video.duration == pytest.approx(9.0)
    assert generation["video_raw"]["duration"] == pytest.approx(9.0)


def test_it_renders_the_same_request_to_the_same_frames(tmp_path):
    videos = []
    for name in ("one", "two"):
        emu = Emulator(tmp_path / name, dream_seconds=0)
        client = httpx.Client(transport=httpx.WSGITransport(app=emu), base_url="http://e")
        videos.append(router_video(client, user_prompt="the same kite")[1])

    assert np.array_equal(videos[0].frames[60], videos[1].frames[60])


def test_it_renders_another_prompt_differently(client):
    kite = router_video(client, user_prompt="a kite")[1]
    boat = router_video(client, user_prompt="a boat")[1]

    assert not np.array_equal(kite.first, boat.first)


def test_it_opens_image_to_video_on_the_given_image(client):
    generation, video = router_video(client, image_url=data_uri(RED))

    assert close(video.first, np.array([[RED]], dtype=np.uint8))
    assert generation["request"]["image_url"].startswith("data:image/png")


def test_it_ends_first_last_on_the_last_image(client):
    video = router_video(client, image_url=data_uri(RED), image_end_url=data_uri(BLUE))[1]

    assert close(video.first, np.array([[RED]], dtype=np.uint8))
    assert close(video.last, np.array([[BLUE]], dtype=np.uint8))


def test_it_ends_a_loop_on_its_first_frame(client):
    striped = np.zeros((180, 320, 3), dtype=np.uint8)
    striped[:, ::20] = 255

    video = router_video(client, image_url=array_data_uri(striped), loop=True)[1]

    difference = np.abs(video.first.astype(int) - video.last.astype(int)).mean()
    middle = np.abs(video.first.astype(int) - video.frames[60].astype(int)).mean()
    assert difference < 2
    assert middle > difference + 5


def test_it_loops_text_to_video_too(client):
    video = router_video(client, loop=True)[1]

    assert np.abs(video.first.astype(int) - video.last.astype(int)).mean() < 2


def test_it_makes_an_extend_the_parent_then_five_seconds_more(client):
    parent, parent_video = router_video(client, image_url=data_uri(GREEN))

    extended = client.post(
        f"/luma/generations/{parent['id']}/extend", json={"user_prompt": "the pond freezes"}
    )
    done = client.get(f"/luma/generations/{extended.json()['id']}").json()
    video = probe(client.get(done["video"]["download_url"]).content)

    assert video.duration == pytest.approx(parent_video.duration + 5.0)
    for n in (0, 60, 119):
        assert np.abs(video.frames[n].astype(int) - parent_video.frames[n].astype(int)).mean() < 3
    assert close(video.frames[120], parent_video.last, tolerance=4)


def test_it_makes_an_official_extend_reverse_extend_and_interpolation(client):
    first = official(client, keyframes={"frame0": {"type": "image", "url": data_uri(RED)}})
    second = official(client, keyframes={"frame0": {"type": "image", "url": data_uri(BLUE)}})
    first_video = probe(client.get(first["assets"]["video"]).content)
    second_video = probe(client.get(second["assets"]["video"]).content)

    def frames(kind0: str | None, kind1: str | None):
        keyframes = {}
        if kind0:
            keyframes["frame0"] = {"type": "generation", "id": first["id"]}
        if kind1:
            keyframes["frame1"] = {"type": "generation", "id": second["id"]}
        generation = official(client, prompt="between them", keyframes=keyframes)
        assert generation["state"] == "completed", generation
        return probe(client.get(generation["assets"]["video"]).content)

    extend = frames("generation", None)
    reverse = frames(None, "generation")
    between = frames("generation", "generation")

    assert extend.duration == pytest.approx(10.0)
    assert close(reverse.last, second_video.first, tolerance=4)
    assert reverse.duration == pytest.approx(5.0)
    assert close(between.first, first_video.last, tolerance=4)
    assert close(between.last, second_video.first, tolerance=4)


def test_it_reads_input_images_over_http(client):
    routes = {
        "/red.png": (200, "image/png", image_bytes(RED)),
        "/blue.jpg": (200, "image/jpeg", image_bytes(BLUE, fmt="JPEG")),
    }
    with serve_bytes(routes) as base:
        video = router_video(client, image_url=f"{base}/red.png", image_end_url=f"{base}/blue.jpg")[
            1
        ]

    assert close(video.first, np.array([[RED]], dtype=np.uint8))
    assert close(video.last, np.array([[BLUE]], dtype=np.uint8))


def test_it_reads_its_own_files_as_input_images(client):
    parent, parent_video = router_video(client, image_url=data_uri(GREEN))

    video = router_video(client, image_url=parent["last_frame"])[1]

    assert close(video.first, parent_video.last)


@pytest.mark.parametrize(
    "route",
    [
        (200, "text/html", b"<html>not an image</html>"),
        (404, "image/png", b""),
        (200, "image/png", b"not really a png"),
    ],
)
def test_it_fails_the_generation_when_the_image_url_is_no_image(client, route):
    with serve_bytes({"/input": route}) as base:
        created = client.post(
            "/luma/generations", json={"user_prompt": "a boat", "image_url": f"{base}/input"}
        )
        generation = client.get(f"/luma/generations/{created.json()['id']}").json()

    assert created.status_code == 200
    assert generation["state"] == "failed"
    assert generation["failure_reason"] == "Failed to read user input frames"
    assert generation["video"] is None


def test_it_fails_the_generation_when_the_image_url_is_unreachable(client):
    url = f"http://127.0.0.1:{closed_port()}/gone.png"

    generation = official(
        client, prompt="a boat", keyframes={"frame0": {"type": "image", "url": url}}
    )

    assert generation["state"] == "failed"
    assert generation["failure_reason"] == "Failed to read user input frames"
    assert generation["assets"] is None
