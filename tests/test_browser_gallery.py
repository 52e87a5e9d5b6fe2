"""Finding things in a big gallery in Chromium: filters in the URL without reloads, the back
button, Load more, play on hover, the keyboard."""

from __future__ import annotations

import os
import re

import pytest

from tests.browser_support import log_in, manage_stack

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def seeded(studio):
    manage_stack("seed_gallery", "--count", "80", "--owners", "2", "--seed", "5")
    return studio


def test_it_finds_things_with_filters_in_the_url(browser, seeded):
    from playwright.sync_api import expect

    page = log_in(browser, seeded, "alice")
    cards = page.locator("#gallery .card")
    expect(cards).to_have_count(24)
    page.evaluate("window.__noReload = true")

    page.get_by_label("Search prompts and titles").fill("jellyfish")
    expect(page).to_have_url(re.compile(r"/\?q=jellyfish$"))
    expect(cards.first).to_contain_text(re.compile("jellyfish", re.I))
    for text in cards.all_inner_texts():
        assert "jellyfish" in text.lower()
    page.get_by_label("Filter by state").select_option("failed")
    expect(page).to_have_url(re.compile(r"/\?q=jellyfish&state=failed$"))
    expect(cards.first.locator(".state")).to_have_text("Failed")
    for state in cards.locator(".state").all_inner_texts():
        assert state == "Failed"
    assert page.evaluate("window.__noReload")  # no full reload so far

    # Back: the previous filters, in the form and in the results.
    page.go_back()
    expect(page).to_have_url(re.compile(r"/\?q=jellyfish$"))
    expect(page.get_by_label("Filter by state")).to_have_value("")
    expect(page.get_by_label("Search prompts and titles")).to_have_value("jellyfish")
    expect(cards.first).to_contain_text(re.compile("jellyfish", re.I))

    # A bookmark of a filtered gallery opens filtered; nothing matches says what to do.
    page.goto("/?q=zebra-that-is-not-there")
    expect(page.get_by_text("No videos match these filters.")).to_be_visible()
    page.get_by_role("link", name="Show everything").first.click()
    expect(cards).to_have_count(24)


def test_it_loads_more_by_cursor_and_keeps_the_order(browser, seeded):
    from playwright.sync_api import expect

    page = log_in(browser, seeded, "alice")
    page.goto("/?order=oldest")
    cards = page.locator("#gallery .card")
    expect(cards).to_have_count(24)
    page.get_by_role("link", name="Load more").scroll_into_view_if_needed()
    expect(cards).to_have_count(48, timeout=10_000)
    times = cards.locator("time").evaluate_all("els => els.map(e => e.getAttribute('datetime'))")
    assert times == sorted(times)
    ids = cards.evaluate_all("els => els.map(e => e.id)")
    assert len(set(ids)) == 48
    # Filtered, the last page ends the list: no more to load.
    page.goto("/?owner=seed-1")
    page.get_by_role("link", name="Load more").scroll_into_view_if_needed()
    expect(page.get_by_role("link", name="Load more")).to_have_count(0, timeout=10_000)
    assert 24 < cards.count() < 48
    assert set(cards.locator(".owner").all_inner_texts()) == {"seed-1"}


def test_it_plays_on_hover_and_works_from_the_keyboard(browser, seeded):
    from playwright.sync_api import expect

    page = log_in(browser, seeded, "alice")
    page.goto("/?state=completed")
    first = page.locator("#gallery .card").first
    video = first.locator("video")
    assert video.evaluate("v => v.paused && v.networkState !== 2")  # nothing loaded yet
    video.hover()
    page.wait_for_function("v => !v.paused && v.currentTime > 0", arg=video.element_handle())
    page.mouse.move(0, 0)
    page.wait_for_function("v => v.paused", arg=video.element_handle())

    # Keyboard: reach a star, press it, see the focus and the result.
    star = first.get_by_role("button", name="Star", exact=True)
    star.focus()
    page.keyboard.press("Enter")
    expect(
        page.locator("#gallery .card").first.get_by_role("button", name="Unstar")
    ).to_be_visible()
    expect(page.locator("#messages")).to_have_text("Starred.")


def test_it_reads_well_on_a_phone_and_a_wide_screen(browser, seeded):
    """Screenshots for a person to look at (SCREENSHOTS=dir); the test checks what can be
    checked: no sideways scrolling, the form and the cards fit."""
    shots = os.environ.get("SCREENSHOTS")
    for name, width in (("phone", 390), ("wide", 1440)):
        page = log_in(browser, seeded, "alice")
        page.set_viewport_size({"width": width, "height": 1100})
        page.goto("/")
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name}: {overflow}px sideways"
        box = page.locator("#gallery .card").first.bounding_box()
        assert box["width"] <= width
        if shots:
            page.screenshot(path=f"{shots}/gallery-{name}.png")
