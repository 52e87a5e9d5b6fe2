from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from generations.models import Generation, State
from tests.conftest import login, make_generation

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/"}


def test_it_shows_the_login_form_with_labelled_fields():
    response = Client().get(reverse("login"))
    html = response.content.decode()
    assert response.status_code == 200
    assert '<label for="id_username">Username</label>' in html
    assert '<label for="id_password">Password</label>' in html
    assert ">Log in</button>" in html


def test_it_logs_in_and_out(alice):
    client = Client()
    response = client.post(reverse("login"), {"username": "alice", "password": "pass"})
    assert response.status_code == 302 and response.url == reverse("gallery")
    assert client.get(reverse("gallery")).status_code == 200
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("gallery")).status_code == 302


def test_it_refuses_a_wrong_password(alice):
    response = Client().post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()


@pytest.mark.parametrize("name", ["gallery", "updates"])
def test_it_sends_the_anonymous_to_the_login_page(name):
    response = Client().get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login") + "?next=")


def test_it_client_redirects_an_anonymous_htmx_request_instead_of_swapping_a_login_page():
    response = Client().get(reverse("updates"), {"since": timezone.now().isoformat()}, **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("login") + "?next=/"
    assert response.content == b""


def test_it_refuses_anonymous_generate_and_media(alice):
    generation = make_generation(alice)
    client = Client()
    assert client.post(reverse("generate"), {"prompt": "x"}).status_code == 302
    assert client.get(reverse("video", args=[generation.code])).status_code == 302
    assert client.get(reverse("generation", args=[generation.code])).status_code == 302
    assert Generation.objects.count() == 1


def test_it_shows_the_form_and_the_gallery(alice, bob):
    make_generation(bob, prompt="Bob's lighthouse at night")
    html = login(alice).get(reverse("gallery")).content.decode()
    for label in ("Prompt", "Model", "Duration", "Resolution", "Expand prompt"):
        assert f">{label}</label>" in html
    assert ">Generate</button>" in html
    assert "Bob&#x27;s lighthouse at night" in html
    assert '<option value="ray-v1"' in html and '<option value="ray-v2"' in html


def test_it_shows_an_empty_gallery_hint(alice):
    html = login(alice).get(reverse("gallery")).content.decode()
    assert "Nothing here yet" in html


def test_it_escapes_what_users_write(alice):
    make_generation(alice, prompt="<script>alert(1)</script>")
    html = login(alice).get(reverse("gallery")).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_it_creates_a_generation_and_answers_htmx_with_its_card(
    alice, broker, django_capture_on_commit_callbacks
):
    client = login(alice)
    data = {"prompt": "A paper boat in the rain", "model_name": "ray-v2", "duration": "5",
            "resolution": "720p", "expand_prompt": "on"}  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("generate"), data, **HTMX)
    generation = Generation.objects.get()
    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="gen-{generation.code}"' in html
    assert "Waiting" in html and "A paper boat in the rain" in html
    assert 'hx-swap-oob="true"' in html  # a fresh, empty form comes back too
    assert (generation.owner, generation.state, generation.expand_prompt) == (
        alice,
        State.WAITING,
        True,
    )
    assert (generation.model_name, generation.duration, generation.resolution) == (
        "ray-v2",
        "5",
        "720p",
    )
    # The submit task was queued for the worker once the row was committed.
    assert broker.queue_size() == 1


def test_it_falls_back_to_a_plain_post(alice):
    response = login(alice).post(
        reverse("generate"), {"prompt": "A paper boat", "model_name": "ray-v2"}, follow=True
    )
    assert response.redirect_chain == [(reverse("gallery"), 302)]
    assert "Your video is on its way." in response.content.decode()
    assert Generation.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"prompt": ""}, "Describe the video you want."),
        ({"prompt": "ab"}, "Write at least 3 characters."),
        ({"prompt": "x" * 5001}, "Keep the prompt under 5000 characters."),
        ({"prompt": "A fox", "model_name": "ray-v9"}, "Choose one of the models in the list."),
        ({"prompt": "A fox", "resolution": "4k"}, "Select a valid choice"),
    ],
)
def test_it_rejects_bad_input_next_to_the_field_and_stores_nothing(alice, broker, data, message):
    data = {"model_name": "ray-v2", **data}
    client = login(alice)
    response = client.post(reverse("generate"), data, **HTMX)
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#generate-form"
    assert message in response.content.decode()
    plain = client.post(reverse("generate"), data)
    assert plain.status_code == 400 and message in plain.content.decode()
    assert Generation.objects.count() == 0
    assert broker.queue_size() == 0


def test_it_drops_duration_and_resolution_for_ray_1_6(alice):
    login(alice).post(reverse("generate"), {"prompt": "A fox", "model_name": "ray-v1",
                                            "duration": "9", "resolution": "1080p"})  # fmt: skip
    generation = Generation.objects.get()
    assert (generation.duration, generation.resolution) == ("", "")


@pytest.mark.parametrize("name", ["generate"])
def test_it_refuses_get_on_post_only_views(alice, name):
    assert login(alice).get(reverse(name)).status_code == 405


@pytest.mark.parametrize("name", ["gallery", "updates"])
def test_it_refuses_post_on_get_only_views(alice, name):
    assert login(alice).post(reverse(name)).status_code == 405


def test_it_requires_csrf_on_generate(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(reverse("generate"), {"prompt": "A fox", "model_name": "ray-v2"})
    assert response.status_code == 403
    assert Generation.objects.count() == 0


def test_it_answers_an_empty_204_when_nothing_changed(alice, django_assert_max_num_queries):
    make_generation(alice)
    client = login(alice)
    since = (timezone.now() + timedelta(seconds=1)).isoformat()
    client.get(reverse("updates"), {"since": since})  # warm the session cache
    with django_assert_max_num_queries(2):
        response = client.get(reverse("updates"), {"since": since}, **HTMX)
    assert response.status_code == 204
    assert response.content == b""


def test_it_sends_changed_cards_and_a_new_cursor(alice, bob):
    before = timezone.now() - timedelta(seconds=5)
    old = make_generation(bob, prompt="Old news", updated_at=before - timedelta(minutes=1))
    fresh = make_generation(bob, prompt="Fresh dream", state=State.DREAMING)
    response = login(alice).get(reverse("updates"), {"since": before.isoformat()}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="gen-{fresh.code}"' in html and "Dreaming" in html
    assert f'id="gen-{old.code}"' not in html
    assert 'id="live"' in html and "since=" in html and "<template>" in html


def test_it_refuses_a_bad_cursor(alice):
    response = login(alice).get(reverse("updates"), {"since": "yesterday"})
    assert response.status_code == 400


def test_it_shows_a_failure_reason_on_the_card(alice):
    make_generation(alice, state=State.FAILED, failure_reason="Contains blacklisted words")
    html = login(alice).get(reverse("gallery")).content.decode()
    assert "Failed" in html and "Contains blacklisted words" in html


def test_it_shows_a_generation_page_with_its_history(alice, bob):
    generation = make_generation(alice, state=State.QUEUED)
    generation._transition(State.DREAMING, from_states=(State.QUEUED,), detail="GPU found")
    response = login(bob).get(reverse("generation", args=[generation.code]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Queued → Dreaming: GPU found" in html


def test_it_404s_an_unknown_generation(alice):
    response = login(alice).get(
        reverse("generation", args=["00000000-0000-0000-0000-000000000000"])
    )
    assert response.status_code == 404


def test_it_tells_a_change_from_none_to_the_microsecond_in_any_time_zone(alice):
    from zoneinfo import ZoneInfo

    generation = make_generation(alice)
    stamp = generation.updated_at
    for cursor in (stamp, stamp.astimezone(ZoneInfo("Asia/Tokyo"))):
        assert Generation.objects.anything_changed_since(cursor - timedelta(microseconds=1))
        assert not Generation.objects.anything_changed_since(cursor)
