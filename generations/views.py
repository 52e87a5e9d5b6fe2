from __future__ import annotations

import mimetypes
import os
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget

from generations import tasks
from generations.forms import GenerateForm
from generations.models import Generation

PAGE_SIZE = 24
# Rows changed within this many seconds of "now" are sent again on the next poll: a write that
# took its timestamp before another but committed after it is not missed.
CURSOR_LAG = timedelta(seconds=2)
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# Uploaded frames are stored as <32 random hex digits>.jpg.
FRAME_NAME_RE = re.compile(r"[0-9a-f]{32}\.jpg")


def _get_generation(request: HttpRequest, code) -> Generation:
    """Every signed-in teammate may see every generation of the shared gallery."""
    return get_object_or_404(Generation.objects.select_related("owner"), code=code)


def _cursor_now() -> str:
    return (timezone.now() - CURSOR_LAG).isoformat()


def _parse_cursor(value: str) -> datetime | None:
    try:
        cursor = datetime.fromisoformat(value)
    except ValueError:
        return None
    return cursor if timezone.is_aware(cursor) else None


@require_GET
def gallery(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "generations/gallery.html",
        {
            "form": GenerateForm(),
            "generations": Generation.objects.for_gallery()[:PAGE_SIZE],
            "cursor": _cursor_now(),
            "poll_ms": settings.GALLERY_POLL_MS,
        },
    )


@require_POST
def generate(request: HttpRequest) -> HttpResponse:
    form = GenerateForm(request.POST)
    if not form.is_valid():
        if request.htmx:
            response = render(request, "generations/gallery.html#generate-form", {"form": form})
            return reswap(retarget(response, "#generate-form"), "outerHTML")
        context = {
            "form": form,
            "generations": Generation.objects.for_gallery()[:PAGE_SIZE],
            "cursor": _cursor_now(),
            "poll_ms": settings.GALLERY_POLL_MS,
        }
        return render(request, "generations/gallery.html", context, status=400)
    form.instance.owner = request.user
    with transaction.atomic():
        generation = form.save()
        transaction.on_commit(lambda: tasks.enqueue_submit(generation))
    if request.htmx:
        return render(
            request,
            "generations/generate_response.html",
            {"generation": generation, "form": GenerateForm()},
        )
    messages.success(request, "Your video is on its way.")
    return redirect("gallery")


@require_GET
def updates(request: HttpRequest) -> HttpResponse:
    """What changed in the gallery since `since`: one request per interval, however many cards.

    Answers 204 when nothing changed, else the changed cards and a new cursor.
    """
    cursor = _parse_cursor(request.GET.get("since", ""))
    if cursor is None:
        return HttpResponse("Give `since` as an ISO timestamp with a time zone.", status=400)
    changed = list(Generation.objects.for_gallery().changed_since(cursor)[: PAGE_SIZE * 2])
    if not changed:
        return HttpResponse(status=204)
    newest = max(generation.updated_at for generation in changed)
    # Never move past "now - lag", never backwards.
    next_cursor = max(cursor, min(newest, timezone.now() - CURSOR_LAG))
    return render(
        request,
        "generations/updates.html",
        {
            "changed": changed,
            "cursor": next_cursor.isoformat(),
            "poll_ms": settings.GALLERY_POLL_MS,
        },
    )


@require_GET
def generation_detail(request: HttpRequest, code) -> HttpResponse:
    generation = _get_generation(request, code)
    return render(
        request,
        "generations/generation.html",
        {"generation": generation, "events": generation.events.all()},
    )


@require_GET
def generation_card(request: HttpRequest, code) -> HttpResponse:
    generation = _get_generation(request, code)
    return render(request, "generations/gallery.html#card", {"generation": generation})


@require_GET
def video(request: HttpRequest, code) -> HttpResponseBase:
    generation = _get_generation(request, code)
    if not generation.video:
        raise Http404("This video is not ready.")
    return _serve_file(request, generation.video.name, "video/mp4")


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
