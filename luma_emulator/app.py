"""The Emulator: a WSGI app that speaks Luma's router and official dialects over one store.

A generation's state is a function of the clock: queued for the first 15 % of dream_seconds,
then dreaming, then completed at created_at + dream_seconds, unless a failure time, a stuck flag
or a forget time was set when it was created. Nothing has to run for time to pass, so a test can
move an injected clock and read the answer.

The video is rendered when a read first sees the generation dreaming or completed (so a failing
input frame shows up as a failure early), or ahead of time by the background thread that
serve() starts. Processes sharing a data directory claim a render with one conditional UPDATE;
the others wait for the winner's file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from luma_emulator import dialects
from luma_emulator.config import options_from_env
from luma_emulator.dialects import Invalid
from luma_emulator.faults import Faults, RequestFault
from luma_emulator.images import InputError, load_image
from luma_emulator.render import Clip, first_and_last_frames, frame_size, render
from luma_emulator.store import IN_FLIGHT, Store

log = logging.getLogger("luma_emulator")

QUEUED_PART = 0.15  # of dream_seconds spent queued
FAIL_PART = 0.5  # a generation doomed by a fault fails half-way through dreaming
RENDER_STALE_SECONDS = 120.0  # a claim older than this belongs to a process that died
RENDER_WAIT_SECONDS = 180.0
INITIAL_CREDITS_CENTS = 100_000.0
# USD per million pixels generated; ray-2 and ray-flash-2 are Luma's published rates.
PRICE_PER_MPIXEL = {"ray-2": 0.01582, "ray-flash-2": 0.00544, "ray-1-6": 0.01582, "ray-3": 0.02}
CALLBACK_RETRIES = 3
CALLBACK_RETRY_DELAY = 0.1
CALLBACK_TIMEOUT = 5.0
VOCABULARIES = {
    "luma": {"queued": "queued", "dreaming": "dreaming"},
    "sister": {"queued": "pending", "dreaming": "processing"},
}
OFFICIAL_PREFIX = "/dream-machine/v1"
FILE_NAME = re.compile(r"^(?P<id>[0-9a-f-]{36})(?P<kind>\.mp4|\.jpg|-last\.jpg)$")
SERVER_ENVIRON_KEY = "luma_emulator.server"


class ConnectionDropped(httpx.RemoteProtocolError):
    """Raised out of the WSGI app to drop the connection without an answer.

    In-process (httpx.WSGITransport) the caller gets this exception from its client, exactly
    what httpx raises when a real server hangs up; serve() closes the socket instead."""

    def __init__(self) -> None:
        super().__init__("Server disconnected without sending a response.")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        kind: str | None = None,
        retry_after: float | None = None,
        detail: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.kind = kind
        self.retry_after = retry_after
        self.detail = detail


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


class Request:
    def __init__(self, environ: Mapping[str, Any]) -> None:
        self.environ = environ
        self.method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = environ.get("PATH_INFO") or "/"
        self.path = path.rstrip("/") or "/"
        self.query = parse_qs(environ.get("QUERY_STRING", ""))
        self._body: bytes | None = None

    def header(self, name: str) -> str:
        return str(self.environ.get("HTTP_" + name.upper().replace("-", "_"), ""))

    @property
    def base_url(self) -> str:
        scheme = self.environ.get("wsgi.url_scheme", "http")
        host = self.header("host")
        if not host:
            host = self.environ.get("SERVER_NAME", "localhost")
            port = str(self.environ.get("SERVER_PORT", ""))
            if port and port != {"http": "80", "https": "443"}.get(scheme):
                host = f"{host}:{port}"
        return f"{scheme}://{host}"

    @property
    def body(self) -> bytes:
        if self._body is None:
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            stream = self.environ.get("wsgi.input")
            self._body = stream.read(length) if stream is not None and length > 0 else b""
        return self._body

    @property
    def under_server(self) -> bool:
        return bool(self.environ.get(SERVER_ENVIRON_KEY))


def iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_response(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), headers=headers or [])


# (method, path pattern, handler, fault endpoint); the dialect is the path's prefix.
ROUTES = [
    ("GET", r"/_emulator/stats", "admin_stats", None),
    ("GET", r"/_emulator/faults", "admin_faults", None),
    ("PUT", r"/_emulator/faults", "admin_set_faults", None),
    ("POST", r"/_emulator/reset", "admin_reset", None),
    ("GET", r"/files/(?P<name>[^/]+)", "download", "download"),
    ("HEAD", r"/files/(?P<name>[^/]+)", "download", "download"),
    ("POST", r"/luma/generations", "router_create", "create"),
    ("GET", r"/luma/generations/(?P<ident>[^/]+)", "router_get", "get"),
    ("POST", r"/luma/generations/(?P<ident>[^/]+)/extend", "router_extend", "extend"),
    ("POST", r"/luma/tasks", "router_tasks", "tasks"),
    ("POST", OFFICIAL_PREFIX + r"/generations/video", "official_create", "create"),
    ("POST", OFFICIAL_PREFIX + r"/generations", "official_create", "create"),
    ("GET", OFFICIAL_PREFIX + r"/generations/concepts/list", "official_concepts", "concepts"),
    ("GET", OFFICIAL_PREFIX + r"/generations/(?P<ident>[^/]+)", "official_get", "get"),
    ("DELETE", OFFICIAL_PREFIX + r"/generations/(?P<ident>[^/]+)", "official_delete", "delete"),
    ("GET", OFFICIAL_PREFIX + r"/generations", "official_list", "list"),
    ("GET", OFFICIAL_PREFIX + r"/credits", "official_credits", "credits"),
    ("GET", OFFICIAL_PREFIX + r"/ping", "official_ping", "ping"),
]
COMPILED_ROUTES = [(m, re.compile(p + "$"), h, e) for m, p, h, e in ROUTES]


def dialect_of(path: str) -> str:
    if path == "/luma" or path.startswith("/luma/"):
        return "router"
    if path.startswith(OFFICIAL_PREFIX):
        return "official"
    if path.startswith("/_emulator"):
        return "admin"
    return "files"


class Emulator:
    """Luma's video API, both dialects, as a WSGI app. See docs/emulator.md."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        dream_seconds: float = 20.0,
        api_key: str | None = None,
        vocabulary: str = "luma",
        create_as_array: bool = False,
        faults: dict[str, Any] | None = None,
        seed: int | None = None,
        max_in_flight: int = 10,
        creates_per_minute: int = 20,
        blacklist: Iterable[str] = ("blacklisted",),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(dream_seconds, int | float) or not dream_seconds >= 0:
            raise ValueError(f"dream_seconds must be a number >= 0, not {dream_seconds!r}")
        if vocabulary not in VOCABULARIES:
            raise ValueError(f"vocabulary must be luma or sister, not {vocabulary!r}")
        for name, value in (
            ("max_in_flight", max_in_flight),
            ("creates_per_minute", creates_per_minute),
        ):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0: no limit), not {value!r}")
        self.data_dir = Path(data_dir)
        self.store = Store(self.data_dir)
        self.dream_seconds = float(dream_seconds)
        self.api_key = api_key or None
        self.vocabulary = vocabulary
        self.create_as_array = create_as_array
        self.seed = seed
        self.faults = Faults(faults, seed)
        self.max_in_flight = max_in_flight
        self.creates_per_minute = creates_per_minute
        self.blacklist = tuple(word.strip().lower() for word in blacklist if word.strip())
        self.clock = clock
        self._lock = threading.Lock()
        self._lazy: threading.Thread | None = None
        self._background: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def from_env(
        cls, data_dir: str | os.PathLike[str], environ: Mapping[str, str] | None = None
    ) -> Emulator:
        """An Emulator configured by the LUMA_EMULATOR_* variables (see docs/emulator.md)."""
        return cls(data_dir, **options_from_env(os.environ if environ is None else environ))

    # --- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ: Mapping[str, Any], start_response: Callable) -> list[bytes]:
        request = Request(environ)
        response = self._respond(request)
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        if response.status == 204:
            headers = [h for h in headers if h[0] not in ("Content-Type", "Content-Length")]
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        return [b""] if request.method == "HEAD" else [response.body]

    def _respond(self, request: Request) -> Response:
        dialect = dialect_of(request.path)
        route, params = self._route(request)
        if route is None:
            allowed = params  # the methods the path answers to, if any
            if allowed:
                return self._error_response(
                    ApiError(405, "Method Not Allowed", code="method_not_allowed"),
                    dialect,
                    [("Allow", ", ".join(sorted(allowed)))],
                )
            return self._error_response(ApiError(404, "Not Found", code="not_found"), dialect)
        handler_name, endpoint = route
        fault = RequestFault()
        try:
            account = ""
            if dialect in ("router", "official"):
                account = self._authenticate(request)
            if endpoint is not None:
                self.store.incr(f"requests.{endpoint}")
                fault = self.faults.for_request(endpoint)
                if fault.latency:
                    time.sleep(fault.latency)
                self._early_fault(fault)
            handler = getattr(self, handler_name)
            response = handler(request, account=account, **params)
        except ApiError as error:
            response = self._error_response(error, dialect)
        except Exception:
            # A bug or a broken data directory: answer like a server would, not with a traceback
            # in the caller's process.
            log.exception("luma emulator: %s %s failed", request.method, request.path)
            error = ApiError(500, "Internal server error", code="internal_error")
            response = self._error_response(error, dialect)
        finally:
            if dialect in ("router", "official"):
                self._kick()
        return self._late_fault(fault, request, response)

    def _route(self, request: Request) -> tuple[tuple[str, str | None] | None, Any]:
        allowed = set()
        for method, pattern, handler, endpoint in COMPILED_ROUTES:
            match = pattern.match(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed.add(method)
                continue
            return (handler, endpoint), match.groupdict()
        return None, allowed

    def _authenticate(self, request: Request) -> str:
        header = request.header("authorization")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if self.api_key is not None and not hmac.compare_digest(token, self.api_key):
            message = "Invalid API key" if token else "Missing API key: send Authorization: Bearer"
            raise ApiError(401, message, code="invalid_api_key", kind="authentication_error")
        return token

    # --- faults ---------------------------------------------------------------------------

    def _early_fault(self, fault: RequestFault) -> None:
        """Faults answered instead of doing the work: nothing is created."""
        if fault.outcome == "error":
            self.store.incr(f"faults.{fault.status}")
            raise {
                500: ApiError(
                    500, "Internal server error", code="internal_error", kind="server_error"
                ),
                502: ApiError(
                    502,
                    "upstream result could not be fetched, safe to retry",
                    code="bad_gateway",
                    kind="upstream_error",
                ),
                503: ApiError(
                    503,
                    "Service under maintenance, try again later",
                    code="service_unavailable",
                    kind="server_error",
                    retry_after=fault.retry_after,
                ),
            }[fault.status]
        if fault.outcome == "rate_limit":
            self.store.incr("faults.rate_limit")
            raise ApiError(
                429,
                "Rate limit exceeded, retry later",
                code="rate_limit_exceeded",
                kind="rate_limit_error",
                retry_after=fault.retry_after,
            )

    def _late_fault(self, fault: RequestFault, request: Request, response: Response) -> Response:
        """Faults that strike after the work was done: the client does not learn the result."""
        if fault.outcome == "hang":
            self.store.incr("faults.hang")
            if not request.under_server:
                # WSGITransport has no timeouts: answer what a client whose timeout is shorter
                # than hang_seconds would see, without making the test wait.
                raise httpx.ReadTimeout("timed out")
            time.sleep(fault.hang_seconds)
        elif fault.outcome == "drop":
            self.store.incr("faults.drop")
            raise ConnectionDropped()
        elif fault.outcome == "malformed" and response.body:
            self.store.incr("faults.malformed")
            body = response.body[: max(1, len(response.body) // 2)]
            if response.content_type == "application/json":
                body += b"<!-- upstream"
            response.body = body  # a download is cut short: a corrupt file, honestly labelled
        return response

    def _error_response(
        self, error: ApiError, dialect: str, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        headers = list(headers or [])
        if error.retry_after is not None:
            headers.append(("Retry-After", str(max(1, math.ceil(error.retry_after)))))
        if dialect == "official":
            detail = error.detail if error.detail is not None else error.message
            return json_response(error.status, {"detail": detail}, headers)
        kind = error.kind or ("invalid_request_error" if error.status < 500 else "server_error")
        code = error.code or "invalid_request"
        body = {"error": {"message": error.message, "type": kind, "code": code}}
        return json_response(error.status, body, headers)

    # --- reading bodies -------------------------------------------------------------------

    def _json_body(self, request: Request, dialect: str, *, optional: bool = False) -> dict:
        raw = request.body
        if not raw.strip() and optional:
            return {}
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = ValueError
        if not isinstance(body, dict):
            if dialect == "official":
                kind = "json_invalid" if body is ValueError else "model_attributes_type"
                msg = "JSON decode error" if body is ValueError else "Input should be an object"
                detail = [{"loc": ["body"], "msg": msg, "type": kind}]
                raise ApiError(422, msg, detail=detail)
            raise ApiError(400, "Request body must be a JSON object", code="invalid_json")
        return body

    def _invalid(self, error: Invalid, dialect: str) -> ApiError:
        if dialect == "official" and error.schema:
            loc = ["body", *(error.field or "").split(".")] if error.field else ["body"]
            detail = [{"loc": loc, "msg": error.message, "type": "value_error"}]
            return ApiError(422, error.message, detail=detail)
        message = error.message
        if error.schema and error.field and dialect != "official":
            message = f"{error.field}: {message}"
        return ApiError(400, message)

    # --- the lifecycle --------------------------------------------------------------------

    def state_of(self, row: dict[str, Any], now: float | None = None) -> str | None:
        """queued, dreaming, completed, failed, or None for a deleted or forgotten one."""
        now = self.clock() if now is None else now
        if row["deleted"] or (row["forget_at"] is not None and now >= row["forget_at"]):
            return None
        if row["fail_at"] is not None and now >= row["fail_at"]:
            return "failed"
        elapsed = now - row["created_at"]
        if elapsed >= row["dream_seconds"] and not row["stuck"]:
            return "completed"
        if elapsed >= row["dream_seconds"] * QUEUED_PART:
            return "dreaming"
        return "queued"

    def _create(
        self,
        account: str,
        dialect: str,
        spec: dict[str, Any],
        base_url: str,
        callback_url: str | None,
    ) -> dict[str, Any]:
        now = self.clock()
        self._check_limits(account, now)
        fault = self.faults.for_generation(spec["prompt"] or "")
        dream = self.dream_seconds
        row: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "account": account,
            "dialect": dialect,
            "created_at": now,
            "dream_seconds": dream,
            "base_url": base_url,
            "spec": json.dumps(spec),
            "canonical": hashlib.sha256(
                json.dumps(dialects.canonical(spec), sort_keys=True).encode()
            ).hexdigest(),
            "callback_url": callback_url,
            "cost_cents": self._cost_cents(spec),
            "stuck": int(fault.stuck),
            "hide_video_polls": int(fault.incomplete),
            "forget_at": None,
        }
        if fault.forget_after is not None:
            row["forget_at"] = now + dream + fault.forget_after
        if self._blacklisted(spec["prompt"] or ""):
            row["fail_at"] = now + dream * QUEUED_PART
            row["failure_reason"] = "Contains blacklisted words"
        elif fault.fail_reason is not None:
            row["fail_at"] = now + dream * FAIL_PART
            row["failure_reason"] = fault.fail_reason
        self.store.insert_unless_duplicate(row)
        created = self.store.get(row["id"])
        assert created is not None
        return created

    def _blacklisted(self, prompt: str) -> bool:
        return any(re.search(rf"\b{re.escape(w)}\b", prompt, re.IGNORECASE) for w in self.blacklist)

    def _cost_cents(self, spec: dict[str, Any]) -> float:
        width, height = frame_size(spec["resolution"], spec["aspect_ratio"])
        pixels = width * height * 24 * spec["duration"]
        return round(pixels / 1e6 * PRICE_PER_MPIXEL.get(spec["model"], 0.01582) * 100, 4)

    def _check_limits(self, account: str, now: float) -> None:
        if self.max_in_flight:
            flying = self.store.in_flight(account, now)
            if len(flying) >= self.max_in_flight:
                ends = [
                    r["created_at"] + r["dream_seconds"]
                    for r in flying
                    if not r["stuck"] and r["fail_at"] is None
                ]
                self.store.incr("rate_limited")
                raise ApiError(
                    429,
                    f"Too many generations in flight: {len(flying)}, the limit is"
                    f" {self.max_in_flight}. Wait for one to finish.",
                    code="rate_limit_exceeded",
                    kind="rate_limit_error",
                    retry_after=max(1.0, min(ends) - now) if ends else 30.0,
                )
        if self.creates_per_minute:
            recent = self.store.select(
                "SELECT created_at FROM generations WHERE account = ? AND created_at > ?"
                " ORDER BY created_at",
                (account, now - 60),
            )
            if len(recent) >= self.creates_per_minute:
                oldest = recent[len(recent) - self.creates_per_minute]["created_at"]
                self.store.incr("rate_limited")
                raise ApiError(
                    429,
                    f"Too many creates: the limit is {self.creates_per_minute} a minute",
                    code="rate_limit_exceeded",
                    kind="rate_limit_error",
                    retry_after=max(1.0, oldest + 60 - now),
                )

    def _live(self, generation_id: str) -> dict[str, Any]:
        row = self.store.get(generation_id)
        if row is None or self.state_of(row) is None:
            raise ApiError(404, f"Generation {generation_id} not found", code="not_found")
        return row

    def _advance(self, row: dict[str, Any]) -> tuple[dict[str, Any], str, bool]:
        """Bring a generation up to the clock: render it if due. (row, state, hide_video)."""
        state = self.state_of(row)
        if state is None:
            raise ApiError(404, f"Generation {row['id']} not found", code="not_found")
        if state in ("dreaming", "completed") and row["render_state"] in ("pending", "claimed"):
            row = self._ensure_rendered(row)
            state = self.state_of(row) or state
        if state == "failed" and row["render_state"] == "pending":
            self.store.update(row["id"], "render_state = 'pending'", render_state="skipped")
        hide = False
        if state == "completed" and row["hide_video_polls"] > 0:
            taken = self.store.execute(
                "UPDATE generations SET hide_video_polls = hide_video_polls - 1"
                " WHERE id = ? AND hide_video_polls > 0",
                (row["id"],),
            )
            hide = taken == 1
        return row, state, hide

    # --- rendering ------------------------------------------------------------------------

    def _paths(self, generation_id: str) -> tuple[Path, Path, Path]:
        files = self.store.files_dir
        return (
            files / f"{generation_id}.mp4",
            files / f"{generation_id}.jpg",
            files / f"{generation_id}-last.jpg",
        )

    def _ensure_rendered(self, row: dict[str, Any]) -> dict[str, Any]:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + RENDER_WAIT_SECONDS
        while True:
            claimed = self.store.execute(
                "UPDATE generations SET render_state = 'claimed', render_owner = :owner,"
                " render_claimed_at = :now WHERE id = :id AND (render_state = 'pending'"
                " OR (render_state = 'claimed' AND render_claimed_at < :stale))",
                {
                    "owner": owner,
                    "now": time.time(),
                    "id": row["id"],
                    "stale": time.time() - RENDER_STALE_SECONDS,
                },
            )
            if claimed:
                self._render(row, owner)
                break
            current = self.store.get(row["id"])
            if current is None or current["render_state"] not in ("pending", "claimed"):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return self.store.get(row["id"]) or row

    def _render(self, row: dict[str, Any], owner: str) -> None:
        ident = row["id"]
        try:
            clip = self._clip(row)
            video, thumbnail, last = self._paths(ident)
            rendered = render(clip, video, thumbnail, last)
        except InputError as error:
            log.info("generation %s: input frames unreadable: %s", ident, error)
            self._fail_render(ident, owner, "Failed to read user input frames")
            return
        except Exception:
            log.exception("generation %s: render failed", ident)
            self._fail_render(ident, owner, "Prompt processing failed")
            return
        self.store.execute(
            "UPDATE generations SET render_state = 'done', width = :w, height = :h,"
            " video_duration = :d WHERE id = :id AND render_owner = :owner",
            {
                "w": rendered.width,
                "h": rendered.height,
                "d": rendered.duration,
                "id": ident,
                "owner": owner,
            },
        )
        self.store.incr("renders")

    def _fail_render(self, ident: str, owner: str, reason: str) -> None:
        self.store.execute(
            "UPDATE generations SET render_state = 'failed', failure_reason = :reason,"
            " fail_at = :now WHERE id = :id AND render_owner = :owner",
            {"reason": reason, "now": self.clock(), "id": ident, "owner": owner},
        )

    def _clip(self, row: dict[str, Any]) -> Clip:
        spec = row["spec"]
        width, height = frame_size(spec["resolution"], spec["aspect_ratio"])
        frame0, frame1 = spec["frame0"], spec["frame1"]
        start = end = prefix = None
        local = self._local_file_resolver(row["base_url"])
        if frame0 and frame0["type"] == "image":
            start = load_image(frame0["url"], local)
        elif frame0:
            parent = self._rendered_input(frame0["id"])
            width, height = parent["width"], parent["height"]
            video = self._paths(parent["id"])[0]
            if frame1 and frame1["type"] == "generation":
                start = first_and_last_frames(video)[1]  # interpolate: a new clip between them
            else:
                prefix = video  # extend: the parent's frames, then more
        if frame1 and frame1["type"] == "image":
            end = load_image(frame1["url"], local)
        elif frame1:
            other = self._rendered_input(frame1["id"])
            if not frame0:
                width, height = other["width"], other["height"]
            end = first_and_last_frames(self._paths(other["id"])[0])[0]
        label = f"luma emulator · {spec['model']} · {spec['resolution']}"
        return Clip(
            width=width,
            height=height,
            seconds=spec["duration"],
            prompt=spec["prompt"] or "",
            label=label,
            start=start,
            end=end,
            loop=spec["loop"],
            prefix=prefix,
        )

    def _rendered_input(self, generation_id: str) -> dict[str, Any]:
        row = self.store.get(generation_id)
        if row is None or row["deleted"]:
            raise InputError(f"keyframe generation {generation_id} is gone")
        if row["render_state"] in ("pending", "claimed"):
            row = self._ensure_rendered(row)
        if row["render_state"] != "done":
            raise InputError(f"keyframe generation {generation_id} has no video")
        return row

    def _local_file_resolver(self, base_url: str) -> Callable[[str], Path | None]:
        own_host = urlsplit(base_url).netloc

        def resolve(url: str) -> Path | None:
            parts = urlsplit(url)
            if parts.netloc != own_host or not parts.path.startswith("/files/"):
                return None
            name = parts.path.removeprefix("/files/")
            path = self.store.files_dir / name
            return path if FILE_NAME.match(name) and path.is_file() else None

        return resolve

    # --- views ----------------------------------------------------------------------------

    def _word(self, state: str) -> str:
        return VOCABULARIES[self.vocabulary].get(state, state)

    def _files(self, row: dict[str, Any], base_url: str) -> dict[str, str]:
        ident = row["id"]
        return {
            "video": f"{base_url}/files/{ident}.mp4",
            "image": f"{base_url}/files/{ident}.jpg",
            "last": f"{base_url}/files/{ident}-last.jpg",
        }

    def router_view(
        self, row: dict[str, Any], state: str, base_url: str, hide: bool = False
    ) -> dict[str, Any]:
        spec = row["spec"]
        video = video_raw = thumbnail = last_frame = None
        if state == "completed" and row["render_state"] == "done" and not hide:
            files = self._files(row, base_url)
            video = {
                "url": files["video"],
                "download_url": files["video"],
                "width": row["width"],
                "height": row["height"],
            }
            video_raw = {"url": files["video"], "duration": row["video_duration"]}
            thumbnail, last_frame = files["image"], files["last"]
        return {
            "id": row["id"],
            "state": self._word(state),
            "created_at": iso(row["created_at"]),
            "failure_reason": row["failure_reason"] if state == "failed" else None,
            "model_name": dialects.ROUTER_MODEL_NAMES.get(spec["model"], spec["model"]),
            "thumbnail": thumbnail,
            "last_frame": last_frame,
            "video": video,
            "video_raw": video_raw,
            "request": dialects.router_request(spec, row["callback_url"]),
        }

    def official_view(
        self, row: dict[str, Any], state: str, base_url: str, hide: bool = False
    ) -> dict[str, Any]:
        spec = row["spec"]
        assets = None
        if state == "completed" and row["render_state"] == "done":
            files = self._files(row, base_url)
            assets = {
                "video": None if hide else files["video"],
                "image": None if hide else files["image"],
                "progress_video": None,
            }
        return {
            "id": row["id"],
            "generation_type": "video",
            "state": state,
            "failure_reason": row["failure_reason"] if state == "failed" else None,
            "created_at": iso(row["created_at"]),
            "assets": assets,
            "model": spec["model"],
            "request": dialects.official_request(spec, row["callback_url"]),
        }

    # --- router dialect -------------------------------------------------------------------

    def router_create(self, request: Request, account: str) -> Response:
        body = self._json_body(request, "router")
        try:
            spec = dialects.router_spec(body)
        except Invalid as error:
            raise self._invalid(error, "router") from None
        row = self._create(account, "router", spec, request.base_url, body.get("notify_hook"))
        return self._router_created(row)

    def _router_created(self, row: dict[str, Any]) -> Response:
        answer = {
            "id": row["id"],
            "state": self._word("queued"),
            "created_at": iso(row["created_at"]),
        }
        return json_response(200, [answer] if self.create_as_array else answer)

    def router_get(self, request: Request, account: str, ident: str) -> Response:
        row, state, hide = self._advance(self._live(ident))
        return json_response(200, self.router_view(row, state, request.base_url, hide))

    def router_extend(self, request: Request, account: str, ident: str) -> Response:
        body = self._json_body(request, "router", optional=True)
        parent, state, _ = self._advance(self._live(ident))
        if state != "completed":
            raise ApiError(
                400,
                f"Generation {ident} is {self._word(state)}: only a completed generation"
                " can be extended",
                code="generation_not_completed",
            )
        try:
            spec = dialects.router_spec(body, parent={**parent["spec"], "id": ident})
        except Invalid as error:
            raise self._invalid(error, "router") from None
        row = self._create(account, "router", spec, request.base_url, body.get("notify_hook"))
        return self._router_created(row)

    def router_tasks(self, request: Request, account: str) -> Response:
        body = self._json_body(request, "router")
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, "ids must be a list of generation ids")
        if len(ids) > 100:
            raise ApiError(400, "ids: at most 100 at a time")
        answers = []
        for ident in ids:
            row = self.store.get(ident)
            if row is None or self.state_of(row) is None:
                continue
            row, state, hide = self._advance(row)
            answers.append(self.router_view(row, state, request.base_url, hide))
        return json_response(200, answers)

    # --- official dialect -----------------------------------------------------------------

    def official_create(self, request: Request, account: str) -> Response:
        body = self._json_body(request, "official")
        try:
            spec = dialects.official_spec(body)
        except Invalid as error:
            raise self._invalid(error, "official") from None
        for name in ("frame0", "frame1"):
            frame = spec[name]
            if frame and frame["type"] == "generation":
                referred = self.store.get(frame["id"])
                state = self.state_of(referred) if referred else None
                if state is None:
                    raise ApiError(400, f"Generation {frame['id']} in keyframes.{name} not found")
                if state != "completed":
                    raise ApiError(
                        400, f"Generation {frame['id']} in keyframes.{name} is not completed"
                    )
        row = self._create(account, "official", spec, request.base_url, body.get("callback_url"))
        return json_response(201, self.official_view(row, "queued", request.base_url))

    def official_get(self, request: Request, account: str, ident: str) -> Response:
        row, state, hide = self._advance(self._live(ident))
        return json_response(200, self.official_view(row, state, request.base_url, hide))

    def official_list(self, request: Request, account: str) -> Response:
        limit = self._query_int(request, "limit", 10, 1, 1000)
        offset = self._query_int(request, "offset", 0, 0, None)
        now = self.clock()
        rows = self.store.select(
            "SELECT * FROM generations WHERE account = :account AND deleted = 0"
            " AND NOT (forget_at IS NOT NULL AND forget_at <= :now)"
            " ORDER BY created_at DESC, seq DESC LIMIT :limit OFFSET :offset",
            {"account": account, "now": now, "limit": limit + 1, "offset": offset},
        )
        generations = []
        for row in rows[:limit]:
            row, state, hide = self._advance(row)
            generations.append(self.official_view(row, state, request.base_url, hide))
        return json_response(
            200,
            {
                "generations": generations,
                "has_more": len(rows) > limit,
                "count": len(generations),
                "limit": limit,
                "offset": offset,
            },
        )

    def _query_int(
        self, request: Request, name: str, default: int, low: int, high: int | None
    ) -> int:
        values = request.query.get(name)
        if not values:
            return default
        try:
            value = int(values[0])
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            msg = f"Input should be an integer >= {low}" + (f" and <= {high}" if high else "")
            raise ApiError(
                422, msg, detail=[{"loc": ["query", name], "msg": msg, "type": "value_error"}]
            )
        return value

    def official_delete(self, request: Request, account: str, ident: str) -> Response:
        self._live(ident)
        if self.store.update(ident, "deleted = 0", deleted=1):
            for path in self._paths(ident):
                path.unlink(missing_ok=True)
        return Response(204, b"", content_type="")

    def official_concepts(self, request: Request, account: str) -> Response:
        return json_response(200, list(dialects.CONCEPTS))

    def official_credits(self, request: Request, account: str) -> Response:
        spent = self.store.scalar(
            "SELECT COALESCE(SUM(cost_cents), 0) FROM generations"
            " WHERE account = ? AND failure_reason IS NULL",
            (account,),
        )
        return json_response(200, {"credit_balance": round(INITIAL_CREDITS_CENTS - spent, 2)})

    def official_ping(self, request: Request, account: str) -> Response:
        return json_response(200, {"message": "pong"})

    # --- files ----------------------------------------------------------------------------

    def download(self, request: Request, account: str, name: str) -> Response:
        match = FILE_NAME.match(name)
        path = self.store.files_dir / name
        if match is None or not path.is_file():
            raise ApiError(404, f"File {name} not found", code="not_found")
        content_type = "video/mp4" if name.endswith(".mp4") else "image/jpeg"
        headers = [("Cache-Control", "public, max-age=3600")]
        return Response(200, path.read_bytes(), content_type=content_type, headers=headers)

    # --- admin ----------------------------------------------------------------------------

    def admin_stats(self, request: Request, account: str) -> Response:
        return json_response(200, self.stats())

    def admin_faults(self, request: Request, account: str) -> Response:
        return json_response(200, self.faults.config)

    def admin_set_faults(self, request: Request, account: str) -> Response:
        body = self._json_body(request, "router")
        try:
            self.set_faults(body)
        except ValueError as error:
            raise ApiError(400, str(error), code="invalid_faults") from None
        return json_response(200, self.faults.config)

    def admin_reset(self, request: Request, account: str) -> Response:
        self.reset()
        return json_response(200, {"reset": True})

    def set_faults(self, config: dict[str, Any] | None) -> None:
        """Replace the fault config of this emulator (this process only)."""
        self.faults = Faults(config, self.seed)

    def reset(self) -> None:
        """Forget every generation, file and counter in the data directory."""
        self.store.reset()

    def stats(self) -> dict[str, Any]:
        now = self.clock()
        params = {"now": now}
        totals = self.store.select(
            "SELECT COUNT(*) AS created, COALESCE(SUM(duplicate), 0) AS duplicates,"
            " COALESCE(SUM(deleted), 0) AS deleted,"
            " COALESCE(SUM(fail_at IS NOT NULL AND fail_at <= :now AND deleted = 0), 0) AS failed,"
            " COALESCE(SUM(deleted = 0 AND stuck = 0 AND created_at + dream_seconds <= :now"
            "  AND NOT (fail_at IS NOT NULL AND fail_at <= :now)), 0) AS completed"
            " FROM generations",
            params,
        )[0]
        in_flight = self.store.scalar(
            f"SELECT COUNT(*) FROM generations WHERE {IN_FLIGHT}",  # noqa: S608
            params,
        )
        counters = self.store.counters()
        return {
            "created": totals["created"],
            "duplicate_creates": totals["duplicates"],
            "in_flight": in_flight,
            "completed": totals["completed"],
            "failed": totals["failed"],
            "deleted": totals["deleted"],
            "renders": counters.get("renders", 0),
            "rate_limited": counters.get("rate_limited", 0),
            "callbacks_sent": counters.get("callbacks.sent", 0),
            "callbacks_failed": counters.get("callbacks.failed", 0),
            "requests": _prefixed(counters, "requests."),
            "faults": _prefixed(counters, "faults."),
        }

    # --- background work and callbacks ---------------------------------------------------

    def run_due(self) -> int:
        """Render what is due and send the callbacks due now; the number of generations seen.

        serve() runs this from a thread a few times a second (rendering every generation ahead
        of its first read). In-process, each API call starts one short-lived thread running it
        when some generation has a callback still to send. A test can call it directly: it
        first waits for such a thread, so that every callback due is sent when it returns."""
        lazy = self._lazy
        if lazy is not None and lazy is not threading.current_thread():
            lazy.join()
        return self._run_due()

    def _run_due(self) -> int:
        if self._background is not None:
            where = (
                "deleted = 0 AND (render_state IN ('pending', 'claimed')"
                " OR (callback_url IS NOT NULL AND notify_done = 0))"
            )
        else:
            where = "deleted = 0 AND callback_url IS NOT NULL AND notify_done = 0"
        rows = self.store.select(f"SELECT * FROM generations WHERE {where} ORDER BY seq")  # noqa: S608
        for row in rows:
            state = self.state_of(row)
            if state is None:
                self.store.update(row["id"], "1", notify_done=1)
                continue
            if state == "queued":
                continue
            try:
                row, state, _ = self._advance(row)
            except ApiError:
                continue
            if row["callback_url"] and not row["notify_done"]:
                self._notify(row, state)
        return len(rows)

    def _notify(self, row: dict[str, Any], state: str) -> None:
        due = {"dreaming": ["dreaming"], "completed": ["dreaming", "completed"]}.get(
            state, ["failed"] if state == "failed" else []
        )
        sent = [s for s in row["notified"].split(",") if s]
        for step in due:
            if step in sent:
                continue
            new = [*sent, step]
            claimed = self.store.update(
                row["id"],
                "notified = :was",
                {"was": ",".join(sent)},
                notified=",".join(new),
                notify_done=int(step in ("completed", "failed")),
            )
            if not claimed:
                return  # another thread or process is sending this one
            sent = new
            view = self.router_view if row["dialect"] == "router" else self.official_view
            self._post_callback(row["callback_url"], view(row, step, row["base_url"]))

    def _post_callback(self, url: str, payload: dict[str, Any]) -> bool:
        for attempt in range(1 + CALLBACK_RETRIES):
            if attempt:
                time.sleep(CALLBACK_RETRY_DELAY)
            try:
                answer = httpx.post(url, json=payload, timeout=CALLBACK_TIMEOUT)
            except httpx.HTTPError as error:
                log.info("callback to %s failed: %s", url, error)
                continue
            if 200 <= answer.status_code < 300:
                self.store.incr("callbacks.sent")
                return True
            log.info("callback to %s answered %s", url, answer.status_code)
        self.store.incr("callbacks.failed")
        return False

    def _kick(self) -> None:
        try:
            self._start_lazy_work()
        except Exception:
            log.exception("luma emulator: could not start background work")

    def _start_lazy_work(self) -> None:
        if self._background is not None:
            return
        with self._lock:
            if self._lazy is not None and self._lazy.is_alive():
                return
            waiting = self.store.scalar(
                "SELECT 1 FROM generations WHERE deleted = 0 AND callback_url IS NOT NULL"
                " AND notify_done = 0 LIMIT 1"
            )
            if not waiting:
                return
            self._lazy = threading.Thread(target=self._run_due_logged, daemon=True)
            self._lazy.start()

    def _run_due_logged(self) -> None:
        try:
            self._run_due()
        except Exception:
            log.exception("luma emulator: background work failed")

    def start_background(self, interval: float = 0.2) -> None:
        """Render ahead and send callbacks from a daemon thread (serve() does this)."""
        with self._lock:
            if self._background is not None:
                return
            self._stop.clear()
            self._background = threading.Thread(
                target=self._background_loop, args=(interval,), daemon=True
            )
            self._background.start()

    def stop_background(self) -> None:
        thread = self._background
        self._stop.set()
        if thread is not None:
            thread.join(timeout=30)
        self._background = None

    def _background_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._run_due_logged()


def _prefixed(counters: dict[str, int], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in sorted(counters.items()) if k.startswith(prefix)}
