"""The app's URLs plus two bench-only views.

- `/_bench/trivial/`: a login-required "ok", the floor every request pays (middleware,
  session, user).
- `/_bench/updates-exists-first/`: the live-update poll with the change proposed in
  BENCHMARKS.md (ask `exists()` before building the annotated query), so the proposal is
  measured on the same run rather than guessed.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_GET

from generations import views
from generations.models import Generation


@login_required
def trivial(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def updates_exists_first(request: HttpRequest) -> HttpResponse:
    cursor = views._parse_cursor(request.GET.get("since", ""))
    if cursor is not None and not Generation.objects.changed_since(cursor).exists():
        return HttpResponse(status=204)
    return views.updates(request)


urlpatterns = [
    path("_bench/trivial/", trivial, name="bench-trivial"),
    path("_bench/updates-exists-first/", updates_exists_first, name="bench-updates-exists"),
    path("", include("lumaweb.urls")),
]
