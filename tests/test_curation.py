"""Curating the shared gallery: star, rename, delete, hide; Remix, Use last frame, Retry;
the detail page with its lineage and download."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image

from generations.management.commands.seed_gallery import POSTER_NAME, VIDEO_NAME
from generations.models import Generation, Mode, Star, State
from tests.conftest import image_upload, login, make_finished, make_generation

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/"}


def reload(generation: Generation) -> Generation:
    return Generation.objects.get(pk=generation.pk)


def test_it_stars_and_unstars_per_person_and_answers_the_card(alice, bob):
    generation = make_finished(alice)
    version = generation.version
    response = login(bob).post(reverse("star", args=[generation.code]), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'aria-label="Unstar"' in html and 'aria-pressed="true"' in html
    assert "Starred." in html and 'id="messages" class="messages" role="status"' in html
    assert reload(generation).version != version  # open galleries hear of it
    assert list(Star.objects.values_list("user__username", flat=True)) == ["bob"]
    # Twice is still one star; alice's view of the card is her own.
    login(bob).post(reverse("star", args=[generation.code]), **HTMX)
    assert Star.objects.count() == 1
    card = login(alice).get(reverse("generation-card", args=[generation.code])).content.decode()
    assert 'aria-label="Star"' in card and '<span class="count" aria-hidden="true">1</span>' in card
    login(bob).post(reverse("unstar", args=[generation.code]), **HTMX)
    assert not Star.objects.exists()


def test_it_renames_and_answers_the_card_with_a_message(alice):
    generation = make_finished(alice)
    response = login(alice).post(
        reverse("rename", args=[generation.code]), {"title": "  Fox at dawn  "}, **HTMX
    )
    html = response.content.decode()
    assert ">Fox at dawn</a></h3>" in html and "Renamed to “Fox at dawn”." in html
    assert reload(generation).title == "Fox at dawn"


def test_it_refuses_a_title_that_is_too_long(alice):
    generation = make_finished(alice)
    response = login(alice).post(
        reverse("rename", args=[generation.code]), {"title": "x" * 201}, **HTMX
    )
    assert response.status_code == 400
    assert "under 200 characters" in response.content.decode()
    assert reload(generation).title == ""


def test_it_renames_by_plain_post_and_goes_back(alice):
    generation = make_finished(alice)
    response = login(alice).post(
        reverse("rename", args=[generation.code]), {"title": "Plain"}, follow=True,
        HTTP_REFERER="http://testserver/?q=fox",
    )  # fmt: skip
    assert response.redirect_chain == [("http://testserver/?q=fox", 302)]
    assert "Renamed to “Plain”." in response.content.decode()


def test_it_deletes_with_confirmation_and_removes_the_files(alice):
    generation = make_generation(
        alice, state=State.COMPLETED, video="videos/own.mp4", poster="posters/own.jpg"
    )
    default_storage.save("videos/own.mp4", io.BytesIO(b"mp4"))
    default_storage.save("posters/own.jpg", io.BytesIO(b"jpg"))
    client = login(alice)
    confirm = client.get(reverse("delete", args=[generation.code])).content.decode()
    assert "Delete this video?" in confirm and 'method="post"' in confirm
    response = client.post(reverse("delete", args=[generation.code]), **HTMX)
    assert response.status_code == 200 and "Video deleted." in response.content.decode()
    assert 'id="gen-' not in response.content.decode()  # the card goes
    assert reload(generation).deleted_at is not None
    assert not default_storage.exists("videos/own.mp4")
    assert not default_storage.exists("posters/own.jpg")
    assert client.get(reverse("generation", args=[generation.code])).status_code == 404


def test_it_keeps_a_file_another_generation_still_uses(alice):
    first = make_finished(alice)
    make_finished(alice)  # the same sample video and poster
    login(alice).post(reverse("delete", args=[first.code]))
    assert default_storage.exists(VIDEO_NAME) and default_storage.exists(POSTER_NAME)


def test_it_deletes_an_uploaded_frame_unless_a_retry_shares_it(alice):
    client = login(alice)
    client.post(reverse("generate"), {"mode": "image", "prompt": "A fox", "model_name": "ray-v2",
                                      "first_frame": image_upload()})  # fmt: skip
    original = Generation.objects.get()
    original.mark_failed("Nope")
    client.post(reverse("retry", args=[original.code]))
    again = Generation.objects.exclude(pk=original.pk).get()
    assert again.first_frame.name == original.first_frame.name
    client.post(reverse("delete", args=[original.code]))
    assert default_storage.exists(again.first_frame.name)
    client.post(reverse("delete", args=[again.code]))
    assert not default_storage.exists(again.first_frame.name)


def test_it_lets_staff_hide_and_show_again(alice, bob, admin_user):
    generation = make_finished(alice)
    staff = login(admin_user)
    response = staff.post(reverse("hide", args=[generation.code]), **HTMX)
    assert "Hidden" in response.content.decode() and "Show in gallery" in response.content.decode()
    assert reload(generation).hidden is True
    assert str(generation.code) not in login(bob).get(reverse("gallery")).content.decode()
    staff.post(reverse("unhide", args=[generation.code]), **HTMX)
    assert str(generation.code) in login(bob).get(reverse("gallery")).content.decode()


def test_it_retries_a_failed_one_with_the_same_settings_as_a_new_generation(alice, bob, broker, django_capture_on_commit_callbacks):  # fmt: skip
    parent = make_finished(alice)
    failed = make_generation(
        alice, state=State.FAILED, failure_reason="Luma was busy", mode=Mode.EXTEND,
        parent=parent, prompt="Keep going", model_name="ray-v1", aspect_ratio="1:1", loop=True,
        expand_prompt=True,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = login(bob).post(reverse("retry", args=[failed.code]), **HTMX)
    again = Generation.objects.exclude(pk__in=[parent.pk, failed.pk]).get()
    assert f'id="gen-{again.code}"' in response.content.decode()
    assert "Trying again with the same settings." in response.content.decode()
    fields = ("mode", "parent", "prompt", "model_name", "aspect_ratio", "loop", "expand_prompt")
    assert [getattr(again, f) for f in fields] == [getattr(failed, f) for f in fields]
    assert (again.owner, again.state) == (bob, State.WAITING)
    assert reload(failed).state == State.FAILED  # the old one stays as it was
    assert broker.queue_size() == 1


def test_it_refuses_to_retry_what_did_not_fail(alice):
    generation = make_finished(alice)
    response = login(alice).post(reverse("retry", args=[generation.code]))
    assert response.status_code == 400
    assert Generation.objects.count() == 1


def test_it_refills_the_form_for_a_remix(alice, bob):
    source = make_generation(
        bob, prompt="Lanterns over a lake", model_name="ray-v1", aspect_ratio="9:16",
        loop=True, mode=Mode.IMAGE, image_url="https://img.example/lake.png",
    )  # fmt: skip
    html = login(alice).get(reverse("compose"), {"remix": source.code}, **HTMX).content.decode()
    assert html.lstrip().startswith('<form id="generate-form"')
    assert "Lanterns over a lake</textarea>" in html
    assert '<option value="ray-v1" selected>' in html
    assert '<option value="9:16" selected>' in html
    assert '<option value="image" selected>' in html
    assert 'value="https://img.example/lake.png"' in html
    assert re.search(r'<input type="checkbox" name="loop"[^>]* checked>', html)


def test_it_refills_the_form_without_javascript_too(alice):
    source = make_generation(alice, prompt="A quiet harbour")
    response = login(alice).get(reverse("compose"), {"remix": source.code}, follow=True)
    assert "A quiet harbour</textarea>" in response.content.decode()


def test_it_remixes_an_uploaded_frame_by_keeping_it(alice):
    client = login(alice)
    client.post(reverse("generate"), {"mode": "image", "prompt": "A fox", "model_name": "ray-v2",
                                      "first_frame": image_upload()})  # fmt: skip
    source = Generation.objects.get()
    name = source.first_frame.name.removeprefix("frames/")
    html = client.get(reverse("compose"), {"remix": source.code}, **HTMX).content.decode()
    assert f'name="first_frame_ref" value="{name}"' in html and f"/frames/{name}" in html
    client.post(reverse("generate"), {"mode": "image", "prompt": "A fox again",
                                      "model_name": "ray-v2", "first_frame_ref": name})  # fmt: skip
    remix = Generation.objects.exclude(pk=source.pk).get()
    assert remix.first_frame.name == source.first_frame.name


def test_it_ignores_a_kept_frame_that_does_not_exist(alice):
    data = {"mode": "image", "prompt": "A fox", "model_name": "ray-v2",
            "first_frame_ref": "../../db.sqlite3"}  # fmt: skip
    response = login(alice).post(reverse("generate"), data)
    assert response.status_code == 400
    assert "Give the first frame" in response.content.decode()


def test_it_starts_a_new_video_on_the_last_frame(alice, bob):
    source = make_finished(alice, prompt="A gradient that moves")
    client = login(bob)
    response = client.post(reverse("use-last-frame", args=[source.code]), **HTMX)
    html = response.content.decode()
    assert '<option value="image" selected>' in html
    name = html.split('name="first_frame_ref" value="')[1].split('"')[0]
    stored = default_storage.open(f"frames/{name}").read()
    # It is the video's last frame: compare with a decode of the video's end.
    import av

    with av.open(default_storage.path(VIDEO_NAME)) as container:
        last = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][-1]
    frame = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB"), dtype=float)
    assert frame.shape == last.shape
    assert np.abs(frame - last).mean() < 12
    response = client.post(reverse("generate"), {"mode": "image", "prompt": "And then",
                                                 "model_name": "ray-v2", "first_frame_ref": name})  # fmt: skip
    made = Generation.objects.exclude(pk=source.pk).get()
    assert (made.mode, made.first_frame.name, made.owner) == (Mode.IMAGE, f"frames/{name}", bob)


def test_it_uses_the_last_frame_without_javascript_through_the_url(alice):
    source = make_finished(alice)
    response = login(alice).post(reverse("use-last-frame", args=[source.code]))
    assert response.status_code == 302 and "first_frame=" in response.url
    html = login(alice).get(response.url).content.decode()
    assert '<option value="image" selected>' in html and 'name="first_frame_ref" value="' in html


def test_it_downloads_the_stored_video_named_after_its_title_or_prompt(alice):
    titled = make_finished(alice, title="Fox at Dawn!", prompt="whatever")
    untitled = make_finished(alice, prompt="A red fox running through snow, slowly")
    client = login(alice)
    response = client.get(reverse("download", args=[titled.code]))
    assert response["Content-Disposition"] == 'attachment; filename="fox-at-dawn.mp4"'
    assert b"".join(response.streaming_content) == default_storage.open(VIDEO_NAME).read()
    response = client.get(reverse("download", args=[untitled.code]))
    assert 'filename="a-red-fox-running-through-snow-slowly.mp4"' in response["Content-Disposition"]


def test_it_shows_the_detail_page_with_lineage_settings_and_copy(alice, bob):
    root = make_finished(alice, prompt="Root clip", title="Root")
    middle = make_finished(bob, prompt="Middle clip", mode=Mode.EXTEND, parent=root)
    child = make_generation(alice, prompt="Child clip", mode=Mode.EXTEND, parent=middle)
    long_prompt = "A very long prompt " * 30
    Generation.objects.filter(pk=middle.pk).update(prompt=long_prompt)
    html = login(alice).get(reverse("generation", args=[middle.code])).content.decode()
    assert long_prompt.strip() in html  # whole, not shortened
    assert "Copy prompt" in html and "data-copy" in html
    lineage = html[html.index('class="lineage"') :]
    assert lineage.index(str(root.code)) < lineage.index('aria-current="page"')
    assert lineage.index('aria-current="page"') < lineage.index(str(child.code))
    assert "Download" in html and reverse("download", args=[middle.code]) in html
    assert "<dt>Mode</dt><dd>Extend</dd>" in html


def test_it_leaves_deleted_links_out_of_the_lineage(alice):
    root = make_finished(alice, prompt="Root clip")
    child = make_finished(alice, prompt="Child clip", mode=Mode.EXTEND, parent=root)
    root.soft_delete()
    html = login(alice).get(reverse("generation", args=[child.code])).content.decode()
    assert str(root.code) not in html
