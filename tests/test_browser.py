"""The whole flow in a real browser against the real stack: gunicorn, a django-q2 worker and
the built-in emulator, started by `manage.py studio` as `make run` starts them."""

from __future__ import annotations

import re

import pytest

from tests.browser_support import log_in

pytestmark = pytest.mark.browser


def test_it_makes_a_video_that_everyone_sees_finish_live(browser, studio):
    from playwright.sync_api import expect

    alice = log_in(browser, studio, "alice")
    bob = log_in(browser, studio, "bob")
    expect(bob.get_by_text("Nothing here yet")).to_be_visible()
    # A marker that a reload would wipe: both pages must keep it to the end.
    for page in (alice, bob):
        page.evaluate("window.__noReload = true")
    video_statuses: list[int] = []
    alice.on("response", lambda r: "/video.mp4" in r.url and video_statuses.append(r.status))

    alice.get_by_label("Prompt", exact=True).fill("A lighthouse beam sweeping over a stormy sea")
    alice.get_by_label("Resolution").select_option("540p")
    alice.get_by_role("button", name="Generate").click()

    card = alice.locator("#gallery .card", has_text="A lighthouse beam sweeping")
    expect(card).to_have_count(1)
    expect(card.locator(".state")).to_have_text(re.compile("Waiting|Submitting|Queued|Dreaming"))
    # The form is ready for the next one.
    expect(alice.get_by_label("Prompt", exact=True)).to_have_value("")
    expect(card.locator(".owner")).to_have_text("alice")

    teammate_card = bob.locator("#gallery .card", has_text="A lighthouse beam sweeping")
    expect(teammate_card).to_have_count(1, timeout=15_000)
    expect(bob.get_by_text("Nothing here yet")).to_be_hidden()

    expect(card.locator(".state")).to_have_text("Completed", timeout=90_000)
    expect(teammate_card.locator(".state")).to_have_text("Completed", timeout=15_000)

    video = card.locator("video")
    expect(video).to_have_attribute("poster", re.compile(r"/poster\.jpg$"))
    # Play it as a person would (this card was replaced live), then seek.
    video.evaluate("v => v.play()")
    alice.wait_for_function("v => v.currentTime > 0.3", arg=video.element_handle(), timeout=20_000)
    duration = video.evaluate("v => v.duration")
    assert 4.5 < duration < 5.5
    seeked = video.evaluate(
        """v => new Promise(resolve => {
            v.addEventListener('seeked', () => resolve(v.currentTime), {once: true});
            v.currentTime = 3.0;
        })"""
    )
    assert abs(seeked - 3.0) < 0.5
    # The teammate's copy of the card plays too.
    teammate_video = teammate_card.locator("video")
    teammate_video.evaluate("v => v.play()")
    bob.wait_for_function("v => v.currentTime > 0.3", arg=teammate_video.element_handle())
    assert 206 in video_statuses
    assert alice.evaluate("window.__noReload") and bob.evaluate("window.__noReload")


def test_it_sends_a_logged_out_gallery_to_the_login_page(browser, studio):
    page = log_in(browser, studio, "bob")
    page.context.clear_cookies()
    # The next live-update poll finds no session: the page goes to the login form, whole.
    page.wait_for_url(re.compile(r"/login/\?next=/$"), timeout=10_000)
    assert page.get_by_label("Username").is_visible()
    assert page.locator("#gallery").count() == 0
