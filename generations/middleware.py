from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth import middleware as auth_middleware
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect


class LoginRequiredMiddleware(auth_middleware.LoginRequiredMiddleware):
    """Django's login-required-everywhere, made safe for htmx.

    An htmx request from a logged-out browser (an expired session while the gallery polls) must
    not swap the login page into the gallery: it gets a client redirect to the login page, with
    the page the person was on as `next`.
    """

    def handle_no_permission(self, request: HttpRequest, view_func) -> HttpResponse:
        if not getattr(request, "htmx", False):
            return super().handle_no_permission(request, view_func)
        current = request.htmx.current_url_abs_path or "/"
        login = redirect_to_login(
            current, resolve_url(self.get_login_url(view_func)), REDIRECT_FIELD_NAME
        )
        return HttpResponseClientRedirect(urlsplit(login.url).geturl())
