"""Every action, for every kind of user: the owner, a teammate, staff and the anonymous.

Every signed-in teammate sees the shared gallery; only the owner or staff changes or deletes;
only staff hides. A generation someone may not see answers 404; one they may see but not
change answers 403.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from generations.models import Generation, Star
from tests.conftest import login, make_finished, make_generation, make_user

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/"}

# action: (method, url name, data, who may: "see" | "change" | "moderate")
ACTIONS = {
    "detail": ("get", "generation", None, "see"),
    "card": ("get", "generation-card", None, "see"),
    "video": ("get", "video", None, "see"),
    "poster": ("get", "poster", None, "see"),
    "download": ("get", "download", None, "see"),
    "remix": ("get", "compose", "remix", "see"),
    "star": ("post", "star", {}, "see"),
    "unstar": ("post", "unstar", {}, "see"),
    "retry": ("post", "retry", {}, "see"),
    "use-last-frame": ("post", "use-last-frame", {}, "see"),
    "rename": ("post", "rename", {"title": "A new name"}, "change"),
    "delete-confirm": ("get", "delete", None, "change"),
    "delete": ("post", "delete", {}, "change"),
    "hide": ("post", "hide", {}, "moderate"),
    "unhide": ("post", "unhide", {}, "moderate"),
}
ALLOWED = {
    "owner": {"see", "change"},
    "teammate": {"see"},
    "staff": {"see", "change", "moderate"},
}


@pytest.fixture
def cast(db):
    owner = make_user("olive")
    return {
        "owner": owner,
        "teammate": make_user("tom"),
        "staff": make_user("sam", is_staff=True),
    }


def target_for(action: str, owner, **fields) -> Generation:
    if action == "retry":
        return make_generation(owner, state="failed", failure_reason="Nope", **fields)
    return make_finished(owner, **fields)


def call(client: Client, action: str, generation: Generation, **extra):
    method, name, data, _ = ACTIONS[action]
    if name == "compose":
        return client.get(reverse(name), {data: generation.code}, **HTMX, **extra)
    url = reverse(name, args=[generation.code])
    if method == "get":
        return client.get(url, **extra)
    return client.post(url, data, **extra)


@pytest.mark.parametrize("who", ["owner", "teammate", "staff"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_it_allows_or_refuses_each_action_for_each_kind_of_user(cast, who, action):
    generation = target_for(action, cast["owner"])
    response = call(login(cast[who]), action, generation)
    needed = ACTIONS[action][3]
    if needed in ALLOWED[who]:
        assert response.status_code in (200, 302), response.content[:300]
    else:
        assert response.status_code == 403
        # Nothing changed.
        after = Generation.objects.get(pk=generation.pk)
        assert (after.title, after.deleted_at, after.hidden) == ("", None, False)


@pytest.mark.parametrize("action", list(ACTIONS))
def test_it_sends_the_anonymous_to_log_in_for_every_action(cast, action):
    generation = target_for(action, cast["owner"])
    response = call(Client(), action, generation)
    if action == "remix":  # an htmx request: a client redirect, never a login page swapped in
        assert response.status_code == 200 and response["HX-Redirect"].startswith("/login/")
    else:
        assert response.status_code == 302 and response.url.startswith("/login/")
    assert not Star.objects.exists()
    assert Generation.objects.filter(deleted_at=None, hidden=False, title="").count() == 1


@pytest.mark.parametrize("who", ["owner", "teammate"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_it_hides_a_hidden_generation_from_non_staff_with_404(cast, who, action):
    generation = target_for(action, cast["owner"], hidden=True)
    assert call(login(cast[who]), action, generation).status_code == 404


@pytest.mark.parametrize("action", [a for a in ACTIONS if ACTIONS[a][1] != "unhide"])
def test_it_lets_staff_act_on_a_hidden_generation(cast, action):
    generation = target_for(action, cast["owner"], hidden=True)
    assert call(login(cast["staff"]), action, generation).status_code in (200, 302)


@pytest.mark.parametrize("who", ["owner", "teammate", "staff"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_it_404s_a_deleted_generation_for_everyone(cast, who, action):
    generation = target_for(action, cast["owner"])
    generation.soft_delete()
    assert call(login(cast[who]), action, generation).status_code == 404


@pytest.mark.parametrize("action", [a for a in ACTIONS if ACTIONS[a][0] == "post"])
def test_it_refuses_get_on_every_post_action(cast, action):
    generation = target_for(action, cast["owner"])
    response = login(cast["owner"]).get(reverse(ACTIONS[action][1], args=[generation.code]))
    assert response.status_code == (200 if action == "delete" else 405)


@pytest.mark.parametrize("action", ["star", "rename", "delete", "hide", "retry", "use-last-frame"])
def test_it_requires_csrf_on_every_action(cast, action):
    generation = target_for(action, cast["owner"])
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast["staff"])
    assert call(client, action, generation).status_code == 403
    after = Generation.objects.get(pk=generation.pk)
    assert (after.title, after.deleted_at, after.hidden) == ("", None, False)
    assert Generation.objects.count() == 1 and not Star.objects.exists()


def test_it_shows_change_buttons_only_to_who_may_use_them(cast):
    generation = make_finished(cast["owner"])
    card = reverse("generation-card", args=[generation.code])
    owner = login(cast["owner"]).get(card).content.decode()
    teammate = login(cast["teammate"]).get(card).content.decode()
    staff = login(cast["staff"]).get(card).content.decode()
    assert ">Rename</button>" in owner and ">Delete</button>" in owner
    assert "Hide from gallery" not in owner
    assert ">Rename</button>" not in teammate and ">Delete</button>" not in teammate
    assert "Hide from gallery" not in teammate and 'aria-label="Star"' in teammate
    assert ">Rename</button>" in staff and "Hide from gallery" in staff


def test_it_refuses_a_teammates_htmx_rename_with_403_not_a_page(cast):
    generation = make_finished(cast["owner"])
    response = login(cast["teammate"]).post(
        reverse("rename", args=[generation.code]), {"title": "Mine now"}, **HTMX
    )
    assert response.status_code == 403
    assert "<html" not in response.content.decode()
    assert Generation.objects.get().title == ""
