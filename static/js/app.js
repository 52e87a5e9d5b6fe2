// lumaweb's little JavaScript: live gallery updates, the form's modes, hover play, relative
// times, copying a prompt. htmx does the rest; every page works without this file.
"use strict";

(function () {
  // --- live updates ---------------------------------------------------------------------------

  // The poller (#live) brings changed cards and tombstones. A tombstone removes its card (it
  // was deleted, hidden, or no longer fits this page's filters). A card replaces its old self
  // when its version changed (so a playing video is not interrupted for nothing), or takes its
  // place by creation time; a card older than what this page has loaded waits for "Load more".
  function placeCards(live) {
    const gallery = document.getElementById("gallery");
    const incoming = live.querySelector("template");
    if (!gallery || !incoming) return;
    for (const gone of incoming.content.querySelectorAll("[data-gone]")) {
      const card = document.getElementById(gone.dataset.gone);
      if (card) card.remove();
    }
    for (const template of incoming.content.querySelectorAll(".card")) {
      // Imported, not moved: a <video> born in the template's inert document will not play.
      const card = document.importNode(template, true);
      const existing = document.getElementById(card.id);
      if (existing && existing.dataset.version === card.dataset.version) continue;
      if (existing && busy(existing)) {
        // Replacing it now would abort its request (a rename, a star) and lose the answer.
        deferred.set(card.id, card);
        setTimeout(placeDeferred, 250);
      } else if (existing) {
        swapIn(existing, card);
      } else if (insertInOrder(gallery, card)) {
        htmx.process(card);
      }
    }
    incoming.remove();
    updateTimes(gallery);
  }

  // Cards that changed while their own action was on its way: placed once it is done, if the
  // action's answer did not already bring the same or a newer version.
  const deferred = new Map();
  const busy = (card) => card.matches(".htmx-request") || card.querySelector(".htmx-request");

  function placeDeferred() {
    for (const [id, card] of deferred) {
      const current = document.getElementById(id);
      if (current && busy(current)) continue;
      deferred.delete(id);
      if (current && Number(card.dataset.version) > Number(current.dataset.version)) {
        swapIn(current, card);
      }
    }
    if (deferred.size) setTimeout(placeDeferred, 250);
  }

  function swapIn(existing, card) {
    const focused = existing.contains(document.activeElement) ? document.activeElement : null;
    carryOver(existing, card);
    existing.replaceWith(card);
    if (focused) refocus(focused, card);
    htmx.process(card);
  }

  // Someone may be using the card being replaced: keep its open menu, what they typed, focus.
  function carryOver(existing, card) {
    existing.querySelectorAll("details[open]").forEach(function (details, i) {
      const twin = card.querySelectorAll("details")[i];
      if (twin) twin.open = true;
    });
    for (const input of existing.querySelectorAll("input[id]")) {
      const twin = card.querySelector("#" + CSS.escape(input.id));
      if (twin && input.value !== input.defaultValue) twin.value = input.value;
    }
  }

  function refocus(focused, card) {
    let twin = focused.id ? card.querySelector("#" + CSS.escape(focused.id)) : null;
    if (!twin && focused.tagName) {
      const same = Array.from(card.querySelectorAll(focused.tagName));
      const index = Array.from(focused.closest(".card").querySelectorAll(focused.tagName)).indexOf(focused);
      twin = same[index] || null;
    }
    if (twin) twin.focus({ preventScroll: true });
  }

  function insertInOrder(gallery, card) {
    const oldestFirst = gallery.dataset.order === "oldest";
    const key = parseFloat(card.dataset.sort);
    for (const other of gallery.querySelectorAll(":scope > .card")) {
      const otherKey = parseFloat(other.dataset.sort);
      if (oldestFirst ? otherKey > key : otherKey < key) {
        other.before(card);
        return true;
      }
    }
    // Past the last card shown: only if there is nothing more to load.
    if (document.getElementById("more")) return false;
    gallery.append(card);
    return true;
  }

  // --- the form: show what the chosen mode uses ------------------------------------------------

  function applyMode(form) {
    const select = form.querySelector("select[name=mode]");
    if (!select) return;
    const mode = select.value;
    form.dataset.mode = mode;
    for (const el of form.querySelectorAll("[data-modes]")) {
      el.hidden = !el.dataset.modes.split(" ").includes(mode);
    }
    const button = form.querySelector("button[type=submit]");
    if (button) button.textContent = mode === "extend" ? "Extend" : "Generate";
    const model = form.querySelector("select[name=model_name]");
    const rayOne = model && model.value === "ray-v1";
    for (const name of ["duration", "resolution"]) {
      const field = form.querySelector(`select[name=${name}]`);
      if (field) field.disabled = rayOne;
    }
  }

  document.addEventListener("change", function (event) {
    const form = event.target.closest && event.target.closest("#generate-form");
    if (form && (event.target.name === "mode" || event.target.name === "model_name")) {
      applyMode(form);
    }
  });

  // --- cards: play on hover, messages for refusals ----------------------------------------------

  document.addEventListener("pointerenter", function (event) {
    const video = event.target;
    if (!(video instanceof HTMLVideoElement) || !video.closest(".card")) return;
    if (video.paused) {
      video.dataset.hoverPlay = "1";
      video.play().catch(function () { delete video.dataset.hoverPlay; });
    }
  }, true);
  document.addEventListener("pointerleave", function (event) {
    const video = event.target;
    if (video instanceof HTMLVideoElement && video.dataset.hoverPlay) {
      delete video.dataset.hoverPlay;
      video.pause();
    }
  }, true);
  // A click means "keep playing" even after the pointer leaves.
  document.addEventListener("click", function (event) {
    if (event.target instanceof HTMLVideoElement) delete event.target.dataset.hoverPlay;
  }, true);

  function say(text, kind) {
    const box = document.getElementById("messages");
    if (!box) return;
    const message = document.createElement("p");
    message.className = "message " + (kind || "error");
    message.textContent = text;
    box.replaceChildren(message);
  }

  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    const plain = (xhr.getResponseHeader("Content-Type") || "").startsWith("text/plain");
    if (xhr.status === 403) say("Not allowed: only its owner or staff may do that.");
    else if (xhr.status === 404) say("This video is no longer there.");
    else if (plain && xhr.responseText) say(xhr.responseText);
    else say("Something went wrong; try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    say("The studio could not be reached; check the connection and try again.");
  });

  // --- copy a prompt ---------------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    const button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const text = source.innerText;
    const done = function () {
      button.textContent = "Copied";
      say("Prompt copied.", "success");
      setTimeout(function () { button.textContent = "Copy prompt"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
    } else {
      selectText(source);
    }
  });

  function selectText(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    say("Press Ctrl+C (⌘C) to copy the selected prompt.", "info");
  }

  // --- relative times --------------------------------------------------------------------------

  const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
  const units = [
    ["year", 31536000], ["month", 2592000], ["week", 604800],
    ["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1],
  ];

  function updateTimes(root) {
    const now = Date.now();
    for (const el of (root || document).querySelectorAll("time[data-relative]")) {
      const seconds = Math.round((new Date(el.getAttribute("datetime")).getTime() - now) / 1000);
      if (Number.isNaN(seconds)) continue;
      if (Math.abs(seconds) < 10) { el.textContent = "just now"; continue; }
      for (const [unit, size] of units) {
        if (Math.abs(seconds) >= size || unit === "second") {
          el.textContent = relative.format(Math.round(seconds / size), unit);
          break;
        }
      }
    }
  }

  htmx.onLoad(function (element) {
    if (element.id === "live") { placeCards(element); return; }
    if (element.classList && element.classList.contains("card")) {
      // A card can come twice: the live poll may bring a new one before the answer to the
      // form that made it. Keep one, the one just swapped in.
      for (const twin of document.querySelectorAll(`[id="${element.id}"]`)) {
        if (twin !== element) twin.remove();
      }
    }
    const form = element.id === "generate-form" ? element : element.querySelector && element.querySelector("#generate-form");
    if (form) applyMode(form);
    updateTimes(element);
  });
  document.addEventListener("DOMContentLoaded", function () {
    updateTimes(document);
    setInterval(updateTimes, 15000);
  });
})();
