from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse

from generations.models import State
from tests.conftest import login, make_generation

pytestmark = pytest.mark.django_db

BYTES = bytes(range(256)) * 40  # 10240 bytes whose every offset is recognisable


@pytest.fixture
def stored(alice):
    default_storage.save("videos/clip.mp4", ContentFile(BYTES))
    default_storage.save("posters/clip.jpg", ContentFile(b"\xff\xd8poster"))
    return make_generation(
        alice, state=State.COMPLETED, video="videos/clip.mp4", poster="posters/clip.jpg"
    )


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_it_serves_the_whole_video_and_advertises_ranges(stored, bob):
    response = login(bob).get(reverse("video", args=[stored.code]))
    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Length"] == str(len(BYTES))
    assert body(response) == BYTES


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-1", 0, 1), ("bytes=100-199", 100, 199), ("bytes=10000-", 10000, 10239),
     ("bytes=-40", 10200, 10239), ("bytes=10200-99999", 10200, 10239)],
)  # fmt: skip
def test_it_answers_range_requests_with_206_and_the_right_bytes(stored, alice, header, start, end):
    response = login(alice).get(reverse("video", args=[stored.code]), HTTP_RANGE=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(BYTES)}"
    assert response["Content-Length"] == str(end - start + 1)
    assert body(response) == BYTES[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=20000-20001", "bytes=50-10"])
def test_it_answers_416_out_of_range(stored, alice, header):
    response = login(alice).get(reverse("video", args=[stored.code]), HTTP_RANGE=header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(BYTES)}"


def test_it_ignores_a_range_it_does_not_understand(stored, alice):
    response = login(alice).get(reverse("video", args=[stored.code]), HTTP_RANGE="items=0-5")
    assert response.status_code == 200
    assert body(response) == BYTES


def test_it_serves_the_poster(stored, alice):
    response = login(alice).get(reverse("poster", args=[stored.code]))
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert body(response) == b"\xff\xd8poster"


def test_it_404s_a_video_that_is_not_ready(alice):
    generation = make_generation(alice, state=State.DREAMING)
    assert login(alice).get(reverse("video", args=[generation.code])).status_code == 404


def test_it_404s_a_stored_file_that_went_missing(stored, alice):
    default_storage.delete("videos/clip.mp4")
    assert login(alice).get(reverse("video", args=[stored.code])).status_code == 404


def test_it_refuses_media_to_the_anonymous_and_post(stored, alice):
    assert Client().get(reverse("video", args=[stored.code])).status_code == 302
    assert Client().get(reverse("poster", args=[stored.code])).status_code == 302
    assert login(alice).post(reverse("video", args=[stored.code])).status_code == 405


def test_it_serves_an_uploaded_frame_without_a_login_at_its_unguessable_name(db):
    name = "0123456789abcdef0123456789abcdef.jpg"
    default_storage.save(f"frames/{name}", ContentFile(b"\xff\xd8frame"))
    response = Client().get(reverse("frame", args=[name]))
    assert response.status_code == 200 and body(response) == b"\xff\xd8frame"
    for guess in ["../db.sqlite3", "secret_key", "0123.jpg", name.replace(".jpg", ".png")]:
        assert Client().get(f"/frames/{guess}").status_code == 404
