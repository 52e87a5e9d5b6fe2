"""Finding things in the shared gallery: filters in the URL, keyset pages, live updates that
respect the filters, and a gallery of a thousand."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from generations.models import Generation, Star, State
from generations.views import PAGE_SIZE
from tests.conftest import login, make_finished, make_generation

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/"}
CODE_RE = re.compile(r'id="gen-([0-9a-f-]{36})"')


def shown(response) -> list[str]:
    return CODE_RE.findall(response.content.decode())


def codes(*generations) -> list[str]:
    return [str(g.code) for g in generations]


@pytest.fixture
def spread(alice, bob):
    """Six generations an hour apart, newest last."""
    now = timezone.now()
    rows = [
        (alice, "A red fox in snow", State.COMPLETED, "ray-v2", ""),
        (bob, "A paper boat in rain", State.FAILED, "ray-v1", "Boat trip"),
        (alice, "Neon alley at night", State.DREAMING, "ray-v2", ""),
        (bob, "Fox cubs playing", State.COMPLETED, "ray-v1", ""),
        (alice, "A lighthouse beam", State.WAITING, "ray-v2", "Storm"),
        (bob, "Desert caravan", State.COMPLETED, "ray-v2", "Dunes"),
    ]
    made = []
    for i, (owner, prompt, state, model, title) in enumerate(rows):
        at = now - timedelta(hours=len(rows) - i)
        made.append(
            make_generation(
                owner,
                prompt=prompt,
                state=state,
                model_name=model,
                title=title,
                created_at=at,
                updated_at=at,
            )
        )
    return made


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [5, 4, 3, 2, 1, 0]),
        ({"show": "mine"}, [4, 2, 0]),
        ({"state": "completed"}, [5, 3, 0]),
        ({"state": "failed"}, [1]),
        ({"state": "working"}, [4, 2]),
        ({"model": "ray-v1"}, [3, 1]),
        ({"owner": "bob"}, [5, 3, 1]),
        ({"q": "fox"}, [3, 0]),
        ({"q": "FOX cubs"}, [3]),
        ({"q": "storm"}, [4]),  # titles too
        ({"order": "oldest"}, [0, 1, 2, 3, 4, 5]),
        ({"show": "mine", "state": "completed", "q": "fox"}, [0]),
        ({"state": "bogus", "model": "ray-v9"}, [5, 4, 3, 2, 1, 0]),  # ignored, not an error
    ],
)
def test_it_filters_the_gallery_from_the_url(alice, spread, params, expected):
    response = login(alice).get(reverse("gallery"), params)
    assert response.status_code == 200
    assert shown(response) == codes(*[spread[i] for i in expected])


def test_it_filters_by_stars_per_person(alice, bob, spread):
    spread[1].star(alice)
    spread[3].star(bob)
    assert shown(login(alice).get(reverse("gallery"), {"show": "starred"})) == codes(spread[1])
    assert shown(login(bob).get(reverse("gallery"), {"show": "starred"})) == codes(spread[3])


def test_it_answers_a_filter_change_with_the_results_only(alice, spread):
    response = login(alice).get(reverse("gallery"), {"q": "fox"}, **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="results">')
    assert 'id="generate-form"' not in html and "<html" not in html
    # The live poller carries the filters.
    assert re.search(r'id="live"[^>]+hx-get="/updates/\?since=[^"]+&amp;q=fox"', html)


def test_it_answers_a_history_restore_with_the_whole_page(alice, spread):
    response = login(alice).get(
        reverse("gallery"), {"q": "fox"}, HTTP_HX_HISTORY_RESTORE_REQUEST="true", **HTMX
    )
    assert "<html" in response.content.decode()


def test_it_keeps_the_filters_in_the_form_and_pushes_them_to_the_url(alice, spread):
    html = login(alice).get(reverse("gallery"), {"q": "fox", "owner": "bob"}).content.decode()
    assert 'hx-push-url="true"' in html
    assert 'value="fox"' in html
    assert '<option value="bob" selected>' in html


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "Nothing here yet. Describe a video above"),
        ({"q": "zebra"}, "No videos match these filters."),
        ({"show": "starred"}, "No starred videos"),
    ],
)
def test_it_says_what_to_do_when_nothing_is_there(alice, params, message):
    assert message in login(alice).get(reverse("gallery"), params).content.decode()


def make_many(owner, count: int) -> list[Generation]:
    now = timezone.now()
    return Generation.objects.bulk_create(
        Generation(
            owner=owner,
            prompt=f"Clip number {i}",
            created_at=now - timedelta(minutes=i),
            updated_at=now - timedelta(minutes=i),
        )
        for i in range(count)
    )


@pytest.mark.parametrize("order", ["", "oldest"])
def test_it_walks_every_page_by_cursor_without_gaps_or_repeats(alice, order):
    make_many(alice, PAGE_SIZE * 2 + 5)
    # Two at the very same instant: the id breaks the tie.
    same = timezone.now() - timedelta(minutes=7, seconds=30)
    make_generation(alice, prompt="Twin A", created_at=same)
    make_generation(alice, prompt="Twin B", created_at=same)
    client = login(alice)
    seen, params = [], {"order": order} if order else {}
    url = reverse("gallery")
    while True:
        response = client.get(url, params, **(HTMX if "after" in params else {}))
        seen += shown(response)
        match = re.search(r'hx-get="(/\?[^"]*after=[^"]+)"', response.content.decode())
        if not match:
            break
        url, params = match.group(1).replace("&amp;", "&"), {}
        params = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
        url = reverse("gallery")
    expected = Generation.objects.ordered(oldest_first=bool(order)).values_list("code", flat=True)
    assert seen == [str(code) for code in expected]
    assert len(seen) == PAGE_SIZE * 2 + 7


def test_it_answers_load_more_with_cards_and_the_next_button(alice):
    make_many(alice, PAGE_SIZE + 3)
    first = login(alice).get(reverse("gallery")).content.decode()
    after = re.search(r"after=([\w-]+)", first).group(1)
    response = login(alice).get(reverse("gallery"), {"after": after}, **HTMX)
    html = response.content.decode()
    assert len(shown(response)) == 3 and "Load more" not in html and "<html" not in html


def test_it_costs_the_same_queries_for_any_gallery_size(alice, bob, django_assert_num_queries):
    client = login(alice)
    client.get(reverse("gallery"))  # warm the session cache
    make_many(bob, 30)
    Star.objects.create(user=alice, generation=Generation.objects.first())
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count(params) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("gallery"), params).status_code == 200
        return len(queries)

    small_page, small_more = count({}), count({"show": "starred", "q": "clip"})
    make_many(bob, 300)
    Star.objects.bulk_create(
        (Star(user=alice, generation=g) for g in Generation.objects.all()[:200]),
        ignore_conflicts=True,
    )
    assert count({}) == small_page
    assert count({"show": "starred", "q": "clip"}) == small_more
    assert small_page <= 6


def test_the_videos_offered_to_extend_cost_no_query_each(alice, bob, admin_user):
    client = login(alice)
    client.get(reverse("gallery"))  # warm the session cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("gallery")).status_code == 200
        return len(queries)

    make_finished(alice, prompt="Alice's finished clip")
    few = count()
    for n in range(12):
        make_finished([alice, bob, admin_user][n % 3], prompt=f"Finished clip {n}")
    assert count() == few <= 6


def test_it_sends_live_changes_that_fit_the_filter_and_tombstones_the_rest(alice, bob):
    before = timezone.now() - timedelta(seconds=5)
    fits = make_generation(bob, prompt="A fox on ice", state=State.DREAMING)
    other = make_generation(bob, prompt="A whale", state=State.DREAMING)
    gone = make_generation(bob, prompt="A fox, deleted")
    gone.soft_delete()
    hidden = make_generation(bob, prompt="A fox, hidden")
    hidden.set_hidden(True)
    response = login(alice).get(
        reverse("updates"), {"since": before.isoformat(), "q": "fox"}, **HTMX
    )
    html = response.content.decode()
    assert f'id="gen-{fits.code}"' in html
    for row in (other, gone, hidden):
        assert f'data-gone="gen-{row.code}"' in html
        assert f'id="gen-{row.code}"' not in html
    assert "q=fox" in html  # the next poll keeps the filter


def test_it_sends_staff_the_hidden_card_live(alice, admin_user):
    before = timezone.now() - timedelta(seconds=5)
    hidden = make_generation(alice, prompt="Hush")
    hidden.set_hidden(True)
    html = login(admin_user).get(reverse("updates"), {"since": before.isoformat()}).content.decode()
    assert f'id="gen-{hidden.code}"' in html and "Hidden" in html


def test_it_sends_a_starred_change_live_only_to_the_starred_filter_that_fits(alice, bob):
    before = timezone.now() - timedelta(seconds=5)
    generation = make_generation(bob)
    generation.star(alice)
    mine = login(alice).get(reverse("updates"), {"since": before.isoformat(), "show": "starred"})
    theirs = login(bob).get(reverse("updates"), {"since": before.isoformat(), "show": "starred"})
    assert f'id="gen-{generation.code}"' in mine.content.decode()
    assert f'data-gone="gen-{generation.code}"' in theirs.content.decode()


def test_it_keeps_the_204_cheap_with_filters(alice, django_assert_max_num_queries):
    client = login(alice)
    since = (timezone.now() + timedelta(seconds=1)).isoformat()
    client.get(reverse("updates"), {"since": since})
    with django_assert_max_num_queries(2):
        response = client.get(
            reverse("updates"), {"since": since, "q": "fox", "show": "starred", "owner": "bob"}
        )
    assert response.status_code == 204


def test_it_hides_hidden_and_deleted_ones_from_the_gallery(alice, admin_user):
    hidden = make_generation(alice, prompt="Hidden one", hidden=True)
    deleted = make_generation(alice, prompt="Deleted one", deleted_at=timezone.now())
    assert shown(login(alice).get(reverse("gallery"))) == []
    staff = login(admin_user).get(reverse("gallery"))
    assert shown(staff) == codes(hidden)
    assert str(deleted.code) not in staff.content.decode()


def test_it_seeds_a_gallery_in_mixed_states():
    call_command("seed_gallery", count=120, owners=3, seed=7)
    assert Generation.objects.count() == 120
    assert Generation.objects.values("owner").distinct().count() == 3
    states = set(Generation.objects.values_list("state", flat=True))
    assert {State.COMPLETED, State.FAILED} <= states and len(states) >= 3
    done = Generation.objects.filter(state=State.COMPLETED).first()
    assert default_storage.exists(done.video.name) and default_storage.exists(done.poster.name)
    # Nothing for the worker: nothing waiting, nothing due for a poll.
    assert not Generation.objects.filter(state=State.WAITING).exists()
    assert not Generation.objects.exclude(next_poll_at=None).exists()


def test_it_plays_the_seeded_video(alice):
    call_command("seed_gallery", count=5, owners=1, seed=1)
    done = Generation.objects.filter(state=State.COMPLETED).first() or Generation.objects.first()
    done.state, done.video = State.COMPLETED, "videos/seed-sample.mp4"
    done.save()
    response = login(alice).get(reverse("video", args=[done.code]))
    assert response.status_code == 200 and response["Content-Type"] == "video/mp4"


def test_it_refuses_nonsense_seed_arguments():
    with pytest.raises(CommandError):
        call_command("seed_gallery", count=5, owners=0)
