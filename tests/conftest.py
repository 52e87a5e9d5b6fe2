from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from generations import luma
from generations.models import Generation

# Tests may swap `luma.client` for one of their own; this stays the cached original.
CACHED_CLIENT = luma.client


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    """Each test gets its own media and emulator storage, fast hashing, plain static files."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "media"},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LUMA_EMULATOR_DIR = tmp_path / "emulator"
    settings.LUMA_API_KEY = ""
    settings.LUMA_API_DIALECT = "router"
    CACHED_CLIENT.cache_clear()
    yield
    CACHED_CLIENT.cache_clear()


def make_user(username: str, **fields):
    return get_user_model().objects.create_user(username=username, password="pass", **fields)


def make_generation(owner, **fields) -> Generation:
    fields.setdefault("prompt", "A red fox running through snow")
    return Generation.objects.create(owner=owner, **fields)


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def broker(db):
    """The configured django-q2 broker (ORM or Redis), emptied for the test."""
    from django_q.brokers import get_broker

    broker = get_broker()
    broker.purge_queue()
    yield broker
    broker.purge_queue()


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def admin_user(db):
    return make_user("boss", is_staff=True, is_superuser=True)


# --- added for the gallery, curation and modes -------------------------------------------------


def image_upload(fmt: str = "PNG", colour=(200, 30, 30), size=(64, 36), name: str = ""):
    """An image file as a browser would upload it."""
    import io

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    name = name or f"frame.{fmt.lower()}"
    return SimpleUploadedFile(name, buffer.getvalue(), content_type=f"image/{fmt.lower()}")


def make_finished(owner, **fields) -> Generation:
    """A completed generation with a real (small, shared) video and poster in storage."""
    from generations.management.commands.seed_gallery import (
        POSTER_NAME,
        VIDEO_NAME,
        ensure_sample_files,
    )

    ensure_sample_files()
    fields.setdefault("upstream_id", f"up-{Generation.objects.count() + 1}")
    return make_generation(owner, state="completed", video=VIDEO_NAME, poster=POSTER_NAME, **fields)


@pytest.fixture
def official(settings):
    settings.LUMA_API_DIALECT = "official"
    CACHED_CLIENT.cache_clear()
    yield
    CACHED_CLIENT.cache_clear()


# The browser tests' one studio stack and one Chromium, shared by every test_browser*.py.
from tests.browser_support import browser, image_server, studio  # noqa: E402, F401
