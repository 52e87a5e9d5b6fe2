from __future__ import annotations

import base64
import mimetypes
import os
import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import push_url, reswap, retarget

from generations import frames, tasks
from generations.forms import (
    GalleryFilterForm,
    GenerateForm,
    RenameForm,
    available_modes,
    uploads_possible,
)
from generations.models import Generation, GenerationQuerySet, Mode, State

PAGE_SIZE = 24
# Rows changed within this many seconds of "now" are sent again on the next poll: a write that
# took its timestamp before another but committed after it is not missed.
CURSOR_LAG = timedelta(seconds=2)
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# Uploaded frames are stored as <32 random hex digits>.jpg.
FRAME_NAME_RE = re.compile(r"[0-9a-f]{32}\.jpg")
# The form refilled from a generation of the gallery: `?remix=<code>` and the like.
COMPOSE_PARAMS = ("remix", "extend", "reverse", "interpolate")


# --- access ---------------------------------------------------------------------------------


def _get_generation(request: HttpRequest, code, *, to: str = "see") -> Generation:
    """The one way to a generation. Every signed-in teammate sees the shared gallery; hidden
    ones only staff, deleted ones nobody (404). `to="change"`: only its owner or staff;
    `to="moderate"`: only staff (PermissionDenied, 403, where it may be seen)."""
    generation = get_object_or_404(
        Generation.objects.visible_to(request.user)
        .with_stars(request.user)
        .select_related("owner", "parent", "end_parent"),
        code=code,
    )
    if to == "change" and not generation.can_be_changed_by(request.user):
        raise PermissionDenied("Only its owner or staff may change this video.")
    if to == "moderate" and not request.user.is_staff:
        raise PermissionDenied("Only staff may hide videos.")
    return generation


def _studio() -> dict[str, Any]:
    """What the cards and the form need to know of the configuration."""
    modes = dict(available_modes())
    return {
        "modes": modes,
        "official": Mode.REVERSE_EXTEND in modes,
        "uploads_ok": uploads_possible(),
        "poll_ms": settings.GALLERY_POLL_MS,
    }


def _back(request: HttpRequest, default: str) -> HttpResponse:
    """Plain-POST fallback: back to the page the form was on."""
    target = request.POST.get("next") or request.headers.get("Referer") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = default
    return redirect(target)


# --- cursors --------------------------------------------------------------------------------


def _cursor_now() -> str:
    return (timezone.now() - CURSOR_LAG).isoformat()


def _parse_cursor(value: str) -> datetime | None:
    try:
        cursor = datetime.fromisoformat(value)
    except ValueError:
        return None
    return cursor if timezone.is_aware(cursor) else None


def _page_cursor(generation: Generation) -> str:
    raw = f"{generation.created_at.isoformat()}|{generation.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _parse_page_cursor(value: str) -> tuple[datetime, int] | None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        at, pk = raw.split("|")
        created_at = datetime.fromisoformat(at)
        return (created_at, int(pk)) if timezone.is_aware(created_at) else None
    except (ValueError, UnicodeDecodeError):
        return None


# --- the gallery ----------------------------------------------------------------------------


def _cards(request: HttpRequest) -> GenerationQuerySet:
    return (
        Generation.objects.visible_to(request.user).with_stars(request.user).select_related("owner")
    )


def _gallery_context(request: HttpRequest, filters: GalleryFilterForm) -> dict[str, Any]:
    """One page of cards by keyset (never OFFSET): the same few queries on any page."""
    queryset = filters.apply(_cards(request), request.user)
    after = _parse_page_cursor(request.GET.get("after", ""))
    if after is not None:
        queryset = queryset.page_after(*after, oldest_first=filters.oldest_first)
    rows = list(queryset[: PAGE_SIZE + 1])
    page, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
    Generation.objects.mark_queue_positions(page)
    query = filters.querystring()
    return {
        **_studio(),
        "filters": filters,
        "filter_query": query,
        "generations": page,
        "next_cursor": _page_cursor(page[-1]) if more else "",
        "cursor": _cursor_now(),
    }


def _compose_form(request: HttpRequest) -> GenerateForm:
    """The form, refilled from a generation (`?remix=`, `?extend=`, ...) or a kept frame."""
    initial: dict[str, Any] = {}
    for param in COMPOSE_PARAMS:
        code = request.GET.get(param)
        if not code:
            continue
        try:
            uuid.UUID(code)
        except ValueError:
            raise Http404("No such video.") from None
        initial = _initial_for(param, _get_generation(request, code))
        break
    frame = request.GET.get("first_frame", "")
    if frame and frames.exists(frame):
        initial.update(mode=Mode.IMAGE, first_frame_ref=frame, parent="", end_parent="")
    form = GenerateForm(initial=initial, user=request.user)
    form.source_choices()
    return form


def _initial_for(param: str, source: Generation) -> dict[str, Any]:
    if param == "remix":
        return source.as_remix_initial()
    settings_of = {
        "model_name": source.model_name,
        "aspect_ratio": source.aspect_ratio,
        "resolution": source.resolution,
        "duration": source.duration,
    }
    if param == "extend":
        return {**settings_of, "mode": Mode.EXTEND, "parent": source.code}
    if param == "reverse":
        return {**settings_of, "mode": Mode.REVERSE_EXTEND, "end_parent": source.code}
    return {**settings_of, "mode": Mode.INTERPOLATE, "parent": source.code}


@require_GET
def gallery(request: HttpRequest) -> HttpResponse:
    filters = GalleryFilterForm(request.GET, with_people=not request.htmx)
    context = _gallery_context(request, filters)
    if request.htmx and not request.htmx.history_restore_request:
        # A filter changed, or "Load more": only the part that changes.
        if request.GET.get("after"):
            return render(request, "generations/gallery.html#more-page", context)
        response = render(request, "generations/gallery.html#results", context)
        # The address bar gets the filters that apply, not every empty field of the form.
        query = context["filter_query"]
        return push_url(response, reverse("gallery") + (f"?{query}" if query else ""))
    context["form"] = _compose_form(request)
    return render(request, "generations/gallery.html", context)


@require_GET
def compose(request: HttpRequest) -> HttpResponse:
    """The form refilled for Remix, Extend, ...: htmx swaps it in; without htmx, the gallery."""
    if not request.htmx:
        query = request.GET.urlencode()
        return redirect(f"{reverse('gallery')}?{query}#compose")
    form = _compose_form(request)
    return render(request, "generations/gallery.html#generate-form", {**_studio(), "form": form})


@require_POST
def generate(request: HttpRequest) -> HttpResponse:
    form = GenerateForm(request.POST, request.FILES, user=request.user)
    if not form.is_valid():
        form.source_choices()
        if request.htmx:
            response = render(
                request, "generations/gallery.html#generate-form", {**_studio(), "form": form}
            )
            return reswap(retarget(response, "#generate-form"), "outerHTML")
        filters = GalleryFilterForm(with_people=True)
        context = {**_gallery_context(request, filters), "form": form}
        return render(request, "generations/gallery.html", context, status=400)
    form.instance.owner = request.user
    with transaction.atomic():
        generation = form.save()
        transaction.on_commit(lambda: tasks.enqueue_submit(generation))
    return _created(request, generation, "Your video is on its way.")


def _created(request: HttpRequest, generation: Generation, message: str) -> HttpResponse:
    if request.htmx:
        generation = _cards(request).get(pk=generation.pk)
        messages.success(request, message)
        fresh = GenerateForm(user=request.user)
        fresh.source_choices()
        return render(
            request,
            "generations/generate_response.html",
            {**_studio(), "generation": generation, "form": fresh},
        )
    messages.success(request, message)
    return redirect("gallery")


@require_GET
def updates(request: HttpRequest) -> HttpResponse:
    """What changed in the gallery since `since`: one request per interval, however many cards.

    Answers 204 when nothing changed, else the changed cards and a new cursor. A changed
    generation this page may no longer show (deleted, hidden, or out of its filters) comes as
    a tombstone, so that open pages drop it.
    """
    cursor = _parse_cursor(request.GET.get("since", ""))
    if cursor is None:
        return HttpResponse("Give `since` as an ISO timestamp with a time zone.", status=400)
    # The common answer first, and cheaply: most polls find nothing new.
    if not Generation.objects.anything_changed_since(cursor):
        return HttpResponse(status=204)
    changed = list(
        Generation.objects.changed_since(cursor)
        .with_stars(request.user)
        .select_related("owner")
        .order_by("updated_at", "id")[: PAGE_SIZE * 2]
    )
    if not changed:
        return HttpResponse(status=204)
    filters = GalleryFilterForm(request.GET)
    shown = set(
        filters.apply(Generation.objects.visible_to(request.user), request.user)
        .filter(pk__in=[generation.pk for generation in changed])
        .values_list("pk", flat=True)
    )
    for generation in changed:
        generation.shown = generation.pk in shown
    Generation.objects.mark_queue_positions(changed)
    newest = max(generation.updated_at for generation in changed)
    # Never move past "now - lag", never backwards.
    next_cursor = max(cursor, min(newest, timezone.now() - CURSOR_LAG))
    return render(
        request,
        "generations/updates.html",
        {
            **_studio(),
            "changed": changed,
            "cursor": next_cursor.isoformat(),
            "filter_query": filters.querystring(),
        },
    )


# --- one generation -------------------------------------------------------------------------


@require_GET
def generation_detail(request: HttpRequest, code) -> HttpResponse:
    generation = _get_generation(request, code)
    visible = Generation.objects.visible_to(request.user)
    lineage = [g for g in generation.lineage() if g == generation or g.deleted_at is None]
    lineage = [g for g in lineage if g == generation or request.user.is_staff or not g.hidden]
    extensions = list(
        visible.filter(parent=generation).select_related("owner").order_by("created_at", "id")
    )
    return render(
        request,
        "generations/generation.html",
        {
            **_studio(),
            "generation": generation,
            "lineage": lineage,
            "extensions": extensions,
            "events": generation.events.all(),
            "plain": True,
        },
    )


@require_GET
def generation_card(request: HttpRequest, code) -> HttpResponse:
    generation = _get_generation(request, code)
    return render(request, "generations/gallery.html#card", {**_studio(), "generation": generation})


def _acted(request: HttpRequest, generation: Generation, message: str) -> HttpResponse:
    """After a change to a card: htmx gets the card again (and the message); a plain POST
    goes back where it came from."""
    messages.success(request, message)
    if request.htmx:
        fresh = _get_generation(request, generation.code)
        return render(request, "generations/card_response.html", {**_studio(), "generation": fresh})
    return _back(request, generation.get_absolute_url())


@require_POST
def star(request: HttpRequest, code) -> HttpResponse:
    generation = _get_generation(request, code)
    generation.star(request.user)
    return _acted(request, generation, "Starred.")


@require_POST
def unstar(request: HttpRequest, code) -> HttpResponse:
    generation = _get_generation(request, code)
    generation.unstar(request.user)
    return _acted(request, generation, "Star removed.")


@require_POST
def rename(request: HttpRequest, code) -> HttpResponse:
    generation = _get_generation(request, code, to="change")
    form = RenameForm(request.POST)
    if not form.is_valid():
        message = " ".join(form.errors["title"])
        if request.htmx:
            return HttpResponse(message, status=400, content_type="text/plain")
        messages.error(request, message)
        return _back(request, generation.get_absolute_url())
    generation.rename(form.cleaned_data["title"])
    title = generation.title
    return _acted(request, generation, f"Renamed to “{title}”." if title else "Title removed.")


@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, code) -> HttpResponse:
    """GET asks for confirmation (the page without JavaScript); POST deletes."""
    generation = _get_generation(request, code, to="change")
    if request.method == "GET":
        return render(request, "generations/delete.html", {"generation": generation})
    generation.soft_delete()
    messages.success(request, "Video deleted.")
    if request.htmx:
        return render(request, "generations/deleted_response.html", {"generation": generation})
    return redirect("gallery")


@require_POST
def hide(request: HttpRequest, code) -> HttpResponse:
    generation = _get_generation(request, code, to="moderate")
    generation.set_hidden(True)
    return _acted(request, generation, "Hidden from the shared gallery (staff still see it).")


@require_POST
def unhide(request: HttpRequest, code) -> HttpResponse:
    generation = _get_generation(request, code, to="moderate")
    generation.set_hidden(False)
    return _acted(request, generation, "Shown in the shared gallery again.")


@require_POST
def retry(request: HttpRequest, code) -> HttpResponse:
    """A failed video, made again with the same settings: a new generation, yours."""
    generation = _get_generation(request, code)
    if generation.state != State.FAILED:
        return HttpResponseBadRequest("Only a failed video can be retried.")
    with transaction.atomic():
        again = generation.copy_for(request.user)
        transaction.on_commit(lambda: tasks.enqueue_submit(again))
    return _created(request, again, "Trying again with the same settings.")


@require_POST
def use_last_frame(request: HttpRequest, code) -> HttpResponse:
    """The form, refilled for an image-to-video that starts on this video's last frame."""
    generation = _get_generation(request, code)
    if not generation.video or not uploads_possible():
        raise Http404("This video has no last frame to use.")
    try:
        name = frames.store_last_frame(Path(default_storage.path(generation.video.name)))
    except (OSError, ValueError):
        raise Http404("The stored video could not be read.") from None
    frame = Path(name).name
    if not request.htmx:
        return redirect(f"{reverse('gallery')}?first_frame={frame}#compose")
    form = GenerateForm(
        initial={"mode": Mode.IMAGE, "first_frame_ref": frame, "prompt": generation.prompt},
        user=request.user,
    )
    form.source_choices()
    return render(request, "generations/gallery.html#generate-form", {**_studio(), "form": form})


# --- files ----------------------------------------------------------------------------------


@require_GET
def video(request: HttpRequest, code) -> HttpResponseBase:
    generation = _get_generation(request, code)
    if not generation.video:
        raise Http404("This video is not ready.")
    if not default_storage.exists(generation.video.name):
        # Our copy went missing: fetch it again while the upstream's link still works.
        tasks.enqueue_restore(generation)
        raise Http404("This video's file is missing; it is being fetched again.")
    return _serve_file(request, generation.video.name, "video/mp4")


@require_GET
def download(request: HttpRequest, code) -> HttpResponseBase:
    """The stored video as a file to keep, named after its title or prompt."""
    generation = _get_generation(request, code)
    if not generation.video:
        raise Http404("This video is not ready.")
    try:
        handle = default_storage.open(generation.video.name, "rb")
    except OSError:
        raise Http404("The stored file is missing.") from None
    name = slugify(generation.display_title)[:80].strip("-") or "video"
    return FileResponse(
        handle, as_attachment=True, filename=f"{name}.mp4", content_type="video/mp4"
    )


@require_GET
def poster(request: HttpRequest, code) -> HttpResponseBase:
    generation = _get_generation(request, code)
    if not generation.poster:
        raise Http404("This poster is not ready.")
    return _serve_file(request, generation.poster.name, "image/jpeg")


@csrf_exempt
@login_not_required
@require_POST
def luma_callback(request: HttpRequest, code, token: str) -> HttpResponse:
    """Luma says a generation changed. Only a hint: the body is never trusted, the generation
    is re-read from the upstream at once (polling stays the fallback)."""
    generation = Generation.objects.filter(code=code).first()
    if generation is None or not constant_time_compare(token, generation.callback_token()):
        raise Http404("Unknown callback.")
    if generation.is_active:
        transaction.on_commit(lambda: tasks.enqueue_refresh(generation))
    return HttpResponse("ok", content_type="text/plain")


@login_not_required
@require_GET
def frame(request: HttpRequest, name: str) -> HttpResponseBase:
    """An uploaded keyframe, public at an unguessable name: Luma fetches it without a login."""
    if not FRAME_NAME_RE.fullmatch(name):
        raise Http404("No such frame.")
    return _serve_file(request, f"frames/{name}", "image/jpeg")


def _serve_file(request: HttpRequest, name: str, content_type: str) -> HttpResponseBase:
    """A stored file, with HTTP Range support: seeking needs it and Safari insists on it."""
    try:
        path = default_storage.path(name)
        size = os.path.getsize(path)
    except (OSError, NotImplementedError):
        raise Http404("The stored file is missing.") from None
    content_type = content_type or mimetypes.guess_type(path)[0] or "application/octet-stream"
    match = RANGE_RE.match(request.headers.get("Range", "").strip())
    if not match or not any(match.groups()):
        response = FileResponse(open(path, "rb"), content_type=content_type)  # noqa: SIM115
        response["Accept-Ranges"] = "bytes"
        response["Cache-Control"] = "private, max-age=86400"
        return response
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    else:
        # "bytes=-N": the last N bytes.
        start, end = max(0, size - int(last)), size - 1
    if start >= size or start > end:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    response = StreamingHttpResponse(
        _read_range(path, start, end - start + 1), status=206, content_type=content_type
    )
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=86400"
    return response


def _read_range(path: str, start: int, length: int, chunk: int = 256 * 1024):
    with open(path, "rb") as handle:
        handle.seek(start)
        while length > 0:
            data = handle.read(min(chunk, length))
            if not data:
                return
            length -= len(data)
            yield data
