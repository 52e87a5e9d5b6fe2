// lumaweb's little JavaScript: live gallery updates and relative times. htmx does the rest.
"use strict";

(function () {
  // The poller (#live) brings changed cards; put each in its place: replace the card it
  // updates, or add a new one at the top. A card whose version did not change is left alone,
  // so a playing video is not interrupted.
  function placeCards(live) {
    const gallery = document.getElementById("gallery");
    const incoming = live.querySelector("template");
    if (!gallery || !incoming) return;
    // Oldest first, so that new cards end up newest on top.
    const cards = Array.from(incoming.content.querySelectorAll(".card")).reverse();
    for (const template of cards) {
      // Imported, not moved: a <video> born in the template's inert document will not play.
      const card = document.importNode(template, true);
      const existing = document.getElementById(card.id);
      if (existing && existing.dataset.version === card.dataset.version) continue;
      if (existing) existing.replaceWith(card);
      else gallery.prepend(card);
      htmx.process(card);
    }
    incoming.remove();
    updateTimes(gallery);
  }

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
    if (element.id === "live") placeCards(element);
    else updateTimes(element);
  });
  document.addEventListener("DOMContentLoaded", function () {
    updateTimes(document);
    setInterval(updateTimes, 15000);
  });
})();
