"""Curating the shared gallery with several people in several browsers at once: one stars,
renames, deletes; the others see it happen live and are refused what is not theirs."""

from __future__ import annotations

import re

import pytest

from tests.browser_support import log_in

pytestmark = pytest.mark.browser


def card(page, text: str):
    return page.locator("#gallery .card", has_text=text)


def csrf(page) -> str:
    return page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']")


def test_it_lets_a_team_curate_and_refuses_what_is_not_theirs(browser, studio):
    from playwright.sync_api import expect

    alice = log_in(browser, studio, "alice")
    bob = log_in(browser, studio, "bob")
    for page in (alice, bob):
        page.evaluate("window.__noReload = true")
    alice.on("dialog", lambda dialog: dialog.accept())

    for prompt in ("Curate: a lantern festival", "Curate: an old tram"):
        alice.get_by_label("Prompt", exact=True).fill(prompt)
        alice.get_by_label("Resolution").select_option("540p")
        alice.get_by_role("button", name="Generate").click()
        expect(card(alice, prompt)).to_have_count(1)
    lantern, tram = card(bob, "lantern festival"), card(bob, "old tram")
    expect(lantern).to_have_count(1, timeout=15_000)
    expect(tram).to_have_count(1)
    code = tram.get_attribute("id").removeprefix("gen-")

    # Bob stars; the star is his, the count is everyone's.
    lantern.get_by_role("button", name="Star", exact=True).click()
    expect(lantern.get_by_role("button", name="Unstar")).to_have_attribute("aria-pressed", "true")
    expect(bob.locator("#messages")).to_have_text("Starred.")
    expect(card(alice, "lantern festival").locator(".count")).to_have_text("1", timeout=10_000)
    expect(
        card(alice, "lantern festival").get_by_role("button", name="Star", exact=True)
    ).to_be_visible()

    # Bob's shortlist, by URL, without a reload; live updates go on under the filter.
    bob.get_by_text("Starred", exact=True).click()
    expect(bob).to_have_url(re.compile(r"\?show=starred$"))
    expect(card(bob, "Curate:")).to_have_count(1)
    expect(card(bob, "lantern festival")).to_have_count(1)

    # Nothing of Alice's to change for Bob: no buttons, and the server says no.
    bob_lantern = card(bob, "lantern festival")
    bob_lantern.locator("summary").click()
    expect(bob_lantern.get_by_role("button", name="Rename")).to_have_count(0)
    expect(bob_lantern.get_by_role("button", name="Delete")).to_have_count(0)
    token = csrf(bob)
    for action, form in (("rename", {"title": "Bob's now"}), ("delete", {}), ("hide", {})):
        response = bob.request.post(
            f"/v/{code}/{action}/", form=form, headers={"X-CSRFToken": token}
        )
        assert response.status == 403, action
    bob_lantern.locator("summary").click()

    # Alice renames hers: Bob's filtered gallery shows the new title live.
    alice_lantern = card(alice, "lantern festival")
    alice_lantern.locator("summary").click()
    alice_lantern.get_by_label("Title").fill("Festival of lights")
    alice_lantern.get_by_role("button", name="Rename").click()
    expect(alice.locator("#messages")).to_have_text("Renamed to “Festival of lights”.")
    expect(card(bob, "lantern festival").locator(".title")).to_have_text(
        "Festival of lights", timeout=10_000
    )

    # Bob back to everyone; Alice deletes the tram (after confirming): gone for both.
    bob.get_by_text("Everyone", exact=True).click()
    expect(card(bob, "old tram")).to_have_count(1)
    alice_tram = card(alice, "old tram")
    alice_tram.locator("summary").click()
    alice_tram.get_by_role("button", name="Delete").click()
    expect(card(alice, "old tram")).to_have_count(0)
    expect(alice.locator("#messages")).to_have_text("Video deleted.")
    expect(card(bob, "old tram")).to_have_count(0, timeout=10_000)
    assert bob.request.get(f"/v/{code}/").status == 404

    # Staff hides the lantern: it leaves the teammates' galleries; staff still sees it.
    boss = log_in(browser, studio, "boss")
    boss_lantern = card(boss, "lantern festival")
    boss_lantern.locator("summary").click()
    boss_lantern.get_by_role("button", name="Hide from gallery").click()
    expect(card(boss, "lantern festival").locator(".hidden-badge")).to_have_text("Hidden")
    expect(card(bob, "lantern festival")).to_have_count(0, timeout=10_000)
    expect(card(alice, "lantern festival")).to_have_count(0, timeout=10_000)
    assert alice.evaluate("window.__noReload") and bob.evaluate("window.__noReload")


def test_a_live_update_does_not_swallow_an_action_on_its_way(browser, studio):
    from playwright.sync_api import expect

    alice = log_in(browser, studio, "alice")
    bob = log_in(browser, studio, "bob")
    prompt = "Race: a kite over the dunes"
    alice.get_by_label("Prompt", exact=True).fill(prompt)
    alice.get_by_label("Resolution").select_option("540p")
    alice.get_by_role("button", name="Generate").click()
    expect(card(bob, prompt)).to_have_count(1, timeout=15_000)

    # Alice's rename is held on its way while Bob's star changes the same card.
    held = []
    alice.route("**/rename/", lambda route: held.append(route))
    mine = card(alice, prompt)
    mine.locator("summary").click()
    mine.get_by_label("Title").fill("Kite")
    mine.get_by_role("button", name="Rename").click()
    alice.wait_for_timeout(200)
    assert len(held) == 1
    card(bob, prompt).get_by_role("button", name="Star", exact=True).click()
    expect(card(bob, prompt).get_by_role("button", name="Unstar")).to_be_visible()
    # The star reaches Alice's page through a live update while her rename is still pending.
    with alice.expect_response(lambda r: "/updates/" in r.url and r.status == 200):
        pass
    held[0].continue_()

    expect(alice.locator("#messages")).to_have_text("Renamed to “Kite”.")
    expect(mine.locator(".title")).to_have_text("Kite")
    expect(mine.locator(".count")).to_have_text("1")
