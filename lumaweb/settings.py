"""lumaweb's one settings file, read from the environment.

With no environment at all the project runs: SQLite under DATA_DIR, the django-q2 ORM broker and
the built-in Luma emulator. Every variable is documented in `.env.example`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name).lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1/0, true/false, yes/no or on/off, not {value!r}")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    value = env_str(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    value = env_str(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    return [item.strip() for item in value.split(",") if item.strip()] if value else default


def database_from_url(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(
            f"DATABASE_URL must start with postgres://, not {parts.scheme}://"
        )
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


def secret_key(data_dir: Path) -> str:
    """SECRET_KEY from the environment, else one generated once and kept under DATA_DIR."""
    if key := env_str("SECRET_KEY"):
        return key
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(secrets.token_urlsafe(50))
        tmp.chmod(0o600)
        # Two processes starting together: the first rename wins, both read the same key.
        if not path.exists():
            tmp.replace(path)
        else:
            tmp.unlink()
    return path.read_text().strip()


DATA_DIR = Path(env_str("DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG")
SECRET_KEY = secret_key(DATA_DIR)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
# Public base URL (https://studio.example.com): callback and image links the upstream can reach.
SITE_URL = env_str("SITE_URL").rstrip("/")
if SITE_URL:
    CSRF_TRUSTED_ORIGINS = [SITE_URL]
    ALLOWED_HOSTS.append(urlsplit(SITE_URL).hostname or "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_q",
    "generations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Every page needs a login; htmx requests get a client redirect instead of a login page.
    "generations.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "lumaweb.urls"
WSGI_APPLICATION = "lumaweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if DATABASE_URL := env_str("DATABASE_URL"):
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": {
                # WAL lets the web process read while the worker writes; IMMEDIATE takes the write
                # lock at BEGIN, so a transaction waits (busy timeout) instead of failing midway
                # with "database is locked".
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_PREFIX", "lumaweb"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Sessions read from the cache first: a live-update poll costs no session query.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# django-q2. Tasks are idempotent (they re-read their row and claim it), so a retry after a
# timeout or a killed worker is safe. `timeout` stays below `retry` as django-q2 requires.
Q_CLUSTER = {
    "name": env_str("Q_CLUSTER_NAME", "lumaweb"),
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": 120,
    "retry": 180,
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 500,
    "ack_failures": True,
    "poll": 0.5,
    "label": "Tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "gallery"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": DATA_DIR / "media"},
    },
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = DATA_DIR / "media"
# Served by generations.views (login required, Range support), never as public files.
MEDIA_URL = "/media/"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SITE_URL.startswith("https://")
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}, "httpx": {"level": "WARNING"}},
}

# --- Luma -----------------------------------------------------------------------------------
# No key: the built-in emulator answers in-process, through the same client code a real key uses.
LUMA_API_KEY = env_str("LUMA_API_KEY")
LUMA_BASE_URL = env_str("LUMA_BASE_URL").rstrip("/")
LUMA_API_DIALECT = env_str("LUMA_API_DIALECT", "router")
if LUMA_API_DIALECT not in {"router", "official"}:
    raise ImproperlyConfigured(
        f"LUMA_API_DIALECT must be router or official, not {LUMA_API_DIALECT}"
    )
if LUMA_API_KEY and not LUMA_BASE_URL:
    raise ImproperlyConfigured("LUMA_API_KEY is set: set LUMA_BASE_URL to your router's URL too")
LUMA_TIMEOUT_SECONDS = env_float("LUMA_TIMEOUT_SECONDS", 30.0, minimum=1.0)
LUMA_EMULATOR_DIR = DATA_DIR / "emulator"
# Seconds between polls of a generation in flight, at first; later polls slow down.
LUMA_POLL_SECONDS = env_float("LUMA_POLL_SECONDS", 2.0, minimum=0.2)
# Generations in flight upstream at once (Luma's account limit); the rest wait in our queue.
LUMA_MAX_CONCURRENT = env_int("LUMA_MAX_CONCURRENT", 10, minimum=1)
# Poll requests a sweep keeps in flight at once (polls only read; the limits are on creates).
LUMA_POLL_CONCURRENCY = env_int("LUMA_POLL_CONCURRENCY", 8, minimum=1)
# A generation in progress longer than this fails as timed out.
LUMA_TIMEOUT_MINUTES = env_float("LUMA_TIMEOUT_MINUTES", 30.0, minimum=1.0)
# Largest video we copy into our storage.
LUMA_MAX_VIDEO_BYTES = env_int("LUMA_MAX_VIDEO_BYTES", 500 * 1024 * 1024, minimum=1)
# How often the gallery asks for changes, in milliseconds.
GALLERY_POLL_MS = env_int("GALLERY_POLL_MS", 2000, minimum=250)
