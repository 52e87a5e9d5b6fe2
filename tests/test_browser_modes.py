"""Every mode, end to end in Chromium on the real stack (official dialect, the emulator
rendering real videos): uploads and URLs, extend, reverse extend, interpolate, Use last frame,
Remix and Retry. Several are submitted at once, then waited for together."""

from __future__ import annotations

import re

import pytest

from tests.browser_support import log_in, mean_colour, png, video_seconds

pytestmark = pytest.mark.browser

DONE = 120_000  # ms: a wave of several renders on two cores


def card(page, text: str):
    return page.locator("#gallery .card", has_text=text)


def code_of(locator) -> str:
    return locator.get_attribute("id").removeprefix("gen-")


def submit(page, *, mode: str = "text", prompt: str, button: str = "Generate", fields=None) -> None:
    """Fill the form as a person would; `fields` maps labels to values (a dict: a file)."""
    from playwright.sync_api import expect

    form = page.locator("#generate-form")
    if mode != form.get_by_label("Mode", exact=True).input_value():
        form.get_by_label("Mode", exact=True).select_option(mode)
    form.get_by_label("Prompt", exact=True).fill(prompt)
    form.get_by_label("Resolution").select_option("540p")
    for label, value in (fields or {}).items():
        field = form.get_by_label(label, exact=True)
        if isinstance(value, dict):
            field.set_input_files(files=[value])
        elif field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    form.get_by_role("button", name=button).click()
    expect(card(page, prompt)).to_have_count(1)
    # The form comes back fresh for the next one.
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("")


def upload(colour: tuple[int, int, int], name: str) -> dict:
    return {"name": name, "mimeType": "image/png", "buffer": png(colour)}


def fetch(page, url: str) -> bytes:
    response = page.request.get(url)
    assert response.ok, url
    return response.body()


def poster_colour(page, locator) -> tuple[float, float, float]:
    return mean_colour(fetch(page, f"/v/{code_of(locator)}/poster.jpg"))


def test_it_makes_every_mode_end_to_end(browser, studio, image_server):
    from playwright.sync_api import expect

    page = log_in(browser, studio, "alice")
    page.evaluate("window.__noReload = true")
    red = (220, 30, 30)

    # Wave 1: four kinds at once, and one that Luma refuses.
    submit(page, prompt="Modes: a kite over dunes")
    submit(
        page,
        mode="image",
        prompt="Modes: red upload",
        fields={"First frame": upload(red, "red.png")},
    )
    submit(
        page,
        mode="image",
        prompt="Modes: green by URL",
        fields={"First frame URL": f"{image_server}/green.png"},
    )
    submit(
        page, mode="first_last", prompt="Modes: red to blue",
        fields={"First frame": upload(red, "first.png"),
                "Last frame URL": f"{image_server}/blue.png"},
    )  # fmt: skip
    submit(page, prompt="Modes: blacklisted words fail")

    text, red_card, green_card, pair = (
        card(page, t)
        for t in ("Modes: a kite", "Modes: red upload", "Modes: green by URL", "Modes: red to")
    )
    for each in (text, red_card, green_card, pair):
        expect(each.locator(".state")).to_have_text("Completed", timeout=DONE)
    failed = card(page, "Modes: blacklisted").first
    expect(failed.locator(".state")).to_have_text("Failed", timeout=DONE)
    expect(failed.locator(".reason")).to_have_text("Contains blacklisted words")
    # The images reached the upstream: each video opens on its first frame.
    r, g, b = poster_colour(page, red_card)
    assert r > 150 and g < 90 and b < 90
    r, g, b = poster_colour(page, green_card)
    assert g > 150 and r < 90 and b < 90
    r, g, b = poster_colour(page, pair)
    assert r > b + 60  # it opens red and only later fades to blue
    for each, mode in ((red_card, "Image to video"), (pair, "First and last frame")):
        expect(each.locator(".mode")).to_have_text(mode)

    # Remix: the form refilled with the settings of a card.
    text.get_by_role("link", name="Remix").click()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("Modes: a kite over dunes")
    expect(page.get_by_label("Resolution")).to_have_value("540p")
    page.get_by_label("Prompt", exact=True).fill("")

    # Wave 2: extend, reverse extend, interpolate, use last frame, retry.
    text.get_by_role("link", name="Extend").click()
    expect(page.get_by_label("Mode", exact=True)).to_have_value("extend")
    expect(page.get_by_label("Start from video")).to_have_value(code_of(text))
    submit(page, mode="extend", prompt="Modes: and the kite flies on", button="Extend")

    red_card.locator("summary").click()
    red_card.get_by_role("link", name="Reverse extend").click()
    expect(page.get_by_label("End on video")).to_have_value(code_of(red_card))
    submit(page, mode="reverse_extend", prompt="Modes: leading up to red")

    green_card.locator("summary").click()
    green_card.get_by_role("link", name="Interpolate").click()
    expect(page.get_by_label("Start from video")).to_have_value(code_of(green_card))
    submit(
        page,
        mode="interpolate",
        prompt="Modes: green into the kite",
        fields={"End on video": code_of(text)},
    )

    pair.get_by_role("button", name="Use last frame").click()
    expect(page.get_by_label("Mode", exact=True)).to_have_value("image")
    expect(page.get_by_alt_text("The first frame this video will start on")).to_be_visible()
    submit(page, mode="image", prompt="Modes: onwards from blue")

    failed.get_by_role("button", name="Retry").click()
    expect(card(page, "Modes: blacklisted")).to_have_count(2)

    extended, reversed_, between, onwards = (
        card(page, t)
        for t in ("Modes: and the kite", "Modes: leading up", "Modes: green into", "Modes: onwards")
    )
    for each in (extended, reversed_, between, onwards):
        expect(each.locator(".state")).to_have_text("Completed", timeout=DONE)
    expect(card(page, "Modes: blacklisted").first.locator(".state")).to_have_text(
        "Failed", timeout=DONE
    )
    # Extend continues the parent: its 5 s and 5 s more.
    assert 9.5 < video_seconds(fetch(page, f"/v/{code_of(extended)}/video.mp4")) < 10.5
    # Use last frame starts where the pair ended: on blue.
    r, g, b = poster_colour(page, onwards)
    assert b > r + 60 and b > g + 60
    # Each knows where it came from.
    extended_code = code_of(extended)
    page.goto(f"/v/{code_of(between)}/")
    expect(page.locator("dd", has_text="Interpolate")).to_be_visible()
    expect(page.get_by_text(re.compile("Ends on"))).to_be_visible()
    page.goto(f"/v/{extended_code}/")
    lineage = page.locator(".lineage")
    expect(lineage.get_by_role("link", name="Modes: a kite over dunes")).to_be_visible()
    lineage.get_by_role("link", name="Modes: a kite over dunes").click()
    expect(page.locator(".lineage .extension")).to_contain_text("Modes: and the kite flies on")
