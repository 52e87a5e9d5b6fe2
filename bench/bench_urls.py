"""The app's URLs plus a bench-only view: `/_bench/trivial/`, a login-required "ok", the
floor every request pays (middleware, session, user)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


@login_required
def trivial(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("_bench/trivial/", trivial, name="bench-trivial"),
    path("", include("lumaweb.urls")),
]
