"""Every mode through the form, and every rule the form applies before anything is sent."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image

from generations import luma, tasks
from generations.models import Generation, Mode
from tests.conftest import image_upload, login, make_finished, make_generation

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/"}


def post(client, data, **extra):
    return client.post(reverse("generate"), {"model_name": "ray-v2", **data}, **extra)


def upstream_request(generation: Generation) -> luma.VideoRequest:
    """What the worker will send for this generation."""
    return tasks.video_request(Generation.objects.get(pk=generation.pk), luma.client())


def stored_frames() -> list[str]:
    try:
        return default_storage.listdir("frames")[1]
    except FileNotFoundError:
        return []


# --- every mode -------------------------------------------------------------------------------


def test_it_makes_a_text_to_video(alice, broker):
    post(login(alice), {"mode": "text", "prompt": "A kite over dunes", "aspect_ratio": "9:16"})
    generation = Generation.objects.get()
    assert (generation.mode, generation.aspect_ratio) == (Mode.TEXT, "9:16")
    assert upstream_request(generation).prompt == "A kite over dunes"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_it_makes_an_image_to_video_from_an_upload_re_encoded(alice, fmt):
    response = post(
        login(alice),
        {"mode": "image", "prompt": "It comes alive", "first_frame": image_upload(fmt)},
    )
    assert response.status_code == 302
    generation = Generation.objects.get()
    assert generation.mode == Mode.IMAGE
    assert generation.first_frame.name.startswith("frames/")
    name = generation.first_frame.name.removeprefix("frames/")
    assert len(name) == 36 and name.endswith(".jpg")
    with Image.open(default_storage.open(generation.first_frame.name)) as stored:
        assert stored.format == "JPEG" and stored.size == (64, 36)
    # The emulator in-process takes the image inline.
    assert upstream_request(generation).image_url.startswith("data:image/jpeg;base64,")


def test_it_makes_an_image_to_video_from_a_url(alice):
    post(
        login(alice),
        {"mode": "image", "prompt": "It comes alive", "image_url": "https://img.example/a.png"},
    )
    generation = Generation.objects.get()
    assert upstream_request(generation).image_url == "https://img.example/a.png"
    assert not generation.first_frame


def test_it_makes_a_first_and_last_frame_video_from_an_upload_and_a_url(alice):
    post(
        login(alice),
        {
            "mode": "first_last",
            "prompt": "From red to blue",
            "first_frame": image_upload(),
            "image_end_url": "https://img.example/blue.png",
        },
    )
    request = upstream_request(Generation.objects.get())
    assert request.image_url.startswith("data:image/jpeg")
    assert request.image_end_url == "https://img.example/blue.png"


def test_it_extends_a_finished_video_without_a_prompt(alice, bob):
    parent = make_finished(bob)
    response = post(login(alice), {"mode": "extend", "parent": str(parent.code)})
    assert response.status_code == 302
    generation = Generation.objects.get(owner=alice)
    assert (generation.mode, generation.parent, generation.prompt) == (Mode.EXTEND, parent, "")


def test_it_reverse_extends_and_interpolates_on_the_official_dialect(alice, official):
    first, second = make_finished(alice), make_finished(alice)
    client = login(alice)
    post(client, {"mode": "reverse_extend", "end_parent": str(second.code)})
    post(
        client,
        {"mode": "interpolate", "parent": str(first.code), "end_parent": str(second.code)},
    )
    reverse_extend, interpolate = Generation.objects.filter(
        mode__in=["reverse_extend", "interpolate"]
    ).order_by("id")
    assert (reverse_extend.parent, reverse_extend.end_parent) == (None, second)
    assert upstream_request(reverse_extend).end_generation_id == second.upstream_id
    assert (interpolate.parent, interpolate.end_parent) == (first, second)


def test_it_makes_an_image_to_video_without_a_prompt_on_the_official_dialect(alice, official):
    response = post(login(alice), {"mode": "image", "image_url": "https://img.example/a.png"})
    assert response.status_code == 302
    assert Generation.objects.get().prompt == ""


# --- what the configured dialect cannot do is hidden and refused ------------------------------


def test_it_offers_only_the_router_modes_on_the_router_dialect(alice):
    html = login(alice).get(reverse("gallery")).content.decode()
    for mode in ("text", "image", "first_last", "extend"):
        assert f'<option value="{mode}"' in html
    assert '<option value="reverse_extend"' not in html
    assert '<option value="interpolate"' not in html


def test_it_offers_every_mode_on_the_official_dialect(alice, official):
    html = login(alice).get(reverse("gallery")).content.decode()
    for mode in Mode.values:
        assert f'<option value="{mode}"' in html


@pytest.mark.parametrize("mode", ["reverse_extend", "interpolate"])
def test_it_refuses_official_only_modes_on_the_router(alice, broker, mode):
    first, second = make_finished(alice), make_finished(alice)
    data = {"mode": mode, "parent": str(first.code), "end_parent": str(second.code)}
    response = post(login(alice), data, **HTMX)
    assert "Select a valid choice" in response.content.decode()
    assert Generation.objects.count() == 2 and broker.queue_size() == 0


# --- the rules, each with its message next to the field ---------------------------------------


def assert_refused(client, data, field_id: str, message: str, broker=None) -> None:
    before = Generation.objects.count()
    frames_before = stored_frames()
    response = post(client, data, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and response["HX-Retarget"] == "#generate-form"
    # The message sits in the field's own box.
    box = html[html.index(f'id="field-{field_id}"') :]
    box = box[: box.index("</div>")]
    assert message in box, html
    assert Generation.objects.count() == before
    assert stored_frames() == frames_before
    if broker is not None:
        assert broker.queue_size() == 0


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"mode": "first_last", "loop": "on", "image_url": "https://a.example/1.png",
          "image_end_url": "https://a.example/2.png"}, "loop", "Loop is not possible with a last frame."),
        ({"mode": "image", "image_url": "ftp://a.example/1.png"}, "image_url", "http or https"),
        ({"mode": "image", "image_url": "not a url"}, "image_url", "http or https"),
        ({"mode": "image"}, "first_frame", "Give the first frame: upload an image or paste its URL."),
        ({"mode": "first_last", "image_url": "https://a.example/1.png"}, "last_frame",
         "Give the last frame: upload an image or paste its URL."),
        ({"mode": "extend"}, "parent", "Choose the video to start from."),
        ({"mode": "extend", "parent": "00000000-0000-0000-0000-000000000000"}, "parent",
         "Choose a video from the list."),
        ({"mode": "extend", "parent": "nonsense"}, "parent", "Choose a video from the list."),
        ({"mode": "image", "image_url": "https://a.example/1.png"}, "prompt", "Describe the video you want."),
        ({"mode": "text", "prompt": "ab"}, "prompt", "Write at least 3 characters."),
        ({"mode": "text", "prompt": "A fox", "aspect_ratio": "2:1"}, "aspect_ratio", "Select a valid choice"),
        ({"mode": "teleport", "prompt": "A fox"}, "mode", "Select a valid choice"),
    ],
)  # fmt: skip
def test_it_refuses_bad_input_next_to_the_field(alice, broker, data, field, message):
    data = {"prompt": "A red fox", **data} if "prompt" not in data and field != "prompt" else data
    assert_refused(login(alice), data, field, message, broker)


@pytest.mark.parametrize(
    ("mode", "message"),
    [("reverse_extend", "Loop is not possible with reverse extend."),
     ("interpolate", "Loop is not possible when interpolating between two videos.")],
)  # fmt: skip
def test_it_refuses_loop_with_generation_keyframes(alice, broker, official, mode, message):
    first, second = make_finished(alice), make_finished(alice)
    data = {"mode": mode, "loop": "on", "parent": str(first.code), "end_parent": str(second.code)}
    assert_refused(login(alice), data, "loop", message, broker)


@pytest.mark.parametrize("mode", ["text", "image", "extend"])
def test_it_accepts_loop_with_one_keyframe_or_none(alice, mode):
    parent = make_finished(alice)
    data = {"mode": mode, "prompt": "A fox", "loop": "on", "parent": str(parent.code),
            "image_url": "https://a.example/1.png"}  # fmt: skip
    assert post(login(alice), data).status_code == 302
    assert Generation.objects.get(mode=mode, state="waiting").loop is True


def test_it_refuses_to_extend_a_video_that_is_not_finished(alice, broker):
    parent = make_generation(alice, state="dreaming")
    assert_refused(
        login(alice), {"mode": "extend", "parent": str(parent.code)}, "parent",
        "This video is not finished yet", broker,
    )  # fmt: skip


def test_it_refuses_to_extend_a_hidden_video_for_non_staff(alice, broker):
    parent = make_finished(alice, hidden=True)
    assert_refused(
        login(alice), {"mode": "extend", "parent": str(parent.code)}, "parent",
        "Choose a video from the list.", broker,
    )  # fmt: skip


def test_it_refuses_both_a_file_and_a_url_for_one_frame(alice, broker):
    data = {"mode": "image", "prompt": "A fox", "first_frame": image_upload(),
            "image_url": "https://a.example/1.png"}  # fmt: skip
    assert_refused(login(alice), data, "image_url", "as a file or as a URL, not both", broker)


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (image_upload("GIF"), "Upload a JPEG, PNG or WebP image."),
        (image_upload("BMP"), "Upload a JPEG, PNG or WebP image."),
        # A name and a type that lie: decoding decides.
        (pytest.param("text", id="text-named-png"), "not an image we can read"),
        (image_upload("PNG", size=(8, 8)), "too small"),
    ],
)
def test_it_refuses_an_upload_that_is_not_a_usable_image(alice, broker, upload, message):
    if not hasattr(upload, "read"):
        from django.core.files.uploadedfile import SimpleUploadedFile

        upload = SimpleUploadedFile("cat.png", b"#!/bin/sh\necho hi\n" * 20, "image/png")
    data = {"mode": "image", "prompt": "A fox", "first_frame": upload}
    assert_refused(login(alice), data, "first_frame", message, broker)


def test_it_refuses_an_upload_over_the_size_limit(alice, broker, monkeypatch):
    from generations import frames

    monkeypatch.setattr(frames, "MAX_UPLOAD_BYTES", 1000)
    big = image_upload("PNG", size=(400, 400))
    data = {"mode": "image", "prompt": "A fox", "first_frame": big}
    assert_refused(login(alice), data, "first_frame", "larger than", broker)


def test_it_strips_what_an_upload_carries_besides_pixels(alice):
    buffer = io.BytesIO()
    Image.new("RGBA", (40, 30), (0, 255, 0, 128)).save(buffer, format="PNG")
    from django.core.files.uploadedfile import SimpleUploadedFile

    payload = buffer.getvalue() + b"<?php evil(); ?>"
    upload = SimpleUploadedFile("x.png", payload, "image/png")
    post(login(alice), {"mode": "image", "prompt": "A fox", "first_frame": upload})
    stored = default_storage.open(Generation.objects.get().first_frame.name).read()
    assert stored.startswith(b"\xff\xd8") and b"evil" not in stored


def test_it_refuses_uploads_with_a_real_key_and_no_site_url(alice, broker, settings):
    settings.LUMA_API_KEY, settings.LUMA_BASE_URL, settings.SITE_URL = (
        "sk-x",
        "https://r.example",
        "",
    )
    client = login(alice)
    html = client.get(reverse("gallery")).content.decode()
    assert 'type="file"' not in html and "Uploads need SITE_URL" in html
    data = {"mode": "image", "prompt": "A fox", "first_frame": image_upload()}
    assert_refused(client, data, "first_frame", "Uploaded images need SITE_URL", broker)


def test_it_offers_uploads_at_a_public_url_under_site_url(alice, settings):
    settings.LUMA_API_KEY, settings.LUMA_BASE_URL = "sk-x", "https://r.example"
    settings.SITE_URL = "https://studio.example"
    post(login(alice), {"mode": "image", "prompt": "A fox", "first_frame": image_upload()})
    generation = Generation.objects.get()
    client = luma.build_client()
    url = tasks.video_request(generation, client).image_url
    name = generation.first_frame.name.removeprefix("frames/")
    assert url == f"https://studio.example/frames/{name}"
    from django.test import Client

    assert Client().get(f"/frames/{name}").status_code == 200  # no login needed


def test_it_ignores_the_fields_of_other_modes(alice):
    data = {"mode": "text", "prompt": "A fox", "image_url": "https://a.example/1.png",
            "first_frame": image_upload()}  # fmt: skip
    assert post(login(alice), data).status_code == 302
    generation = Generation.objects.get()
    assert (generation.image_url, generation.first_frame.name) == ("", "")
    assert stored_frames() == []


def test_it_labels_every_field_for_people_and_tests(alice, official):
    html = login(alice).get(reverse("gallery")).content.decode()
    for label in ("Prompt", "Model", "Duration", "Resolution", "Aspect ratio", "Loop",
                  "Expand prompt", "First frame", "First frame URL", "Last frame",
                  "Last frame URL", "Mode", "Start from video", "End on video"):  # fmt: skip
        assert f">{label}</label>" in html, label


def test_it_says_extend_on_the_button_when_extending(alice):
    parent = make_finished(alice)
    html = login(alice).get(reverse("compose"), {"extend": parent.code}, **HTMX).content.decode()
    assert ">Extend</button>" in html and ">Generate</button>" not in html
    assert f'<option value="{parent.code}" selected>' in html
