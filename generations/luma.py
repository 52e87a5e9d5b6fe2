"""The one module that speaks HTTP to Luma.

Two dialects of the same service (see shared/LUMA.md): a router's `/luma/generations` (the
default) and Luma's official `/dream-machine/v1`. Without `LUMA_API_KEY` the same client talks to
the built-in emulator in-process through `httpx.WSGITransport`: the code path is the one a real
key takes, only the transport differs.

Errors are sorted by what the caller may do about them:
- `TransientError`: the request certainly did not take effect (refused connection, 429, 5xx): retry.
- `AmbiguousError`: it may have taken effect (read timeout, dropped connection): never resend
  a create blindly.
- `PermanentError`: resending the same request will not help (400, 401, 403, 404).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings

log = logging.getLogger(__name__)

EMULATOR_BASE_URL = "http://luma-emulator"

# Both vocabularies of the routers, and Luma's own; an unknown word means "still working".
STATES = {
    "queued": "queued",
    "pending": "queued",
    "dreaming": "dreaming",
    "processing": "dreaming",
    "completed": "completed",
    "failed": "failed",
}
OFFICIAL_MODELS = {"ray-v1": "ray-1-6", "ray-v2": "ray-2", "ray-v3": "ray-2"}


class LumaError(Exception):
    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class TransientError(LumaError):
    pass


class AmbiguousError(LumaError):
    pass


class PermanentError(LumaError):
    pass


class NotFound(PermanentError):
    pass


@dataclass(frozen=True)
class Upstream:
    """What the upstream says of one generation, in our words."""

    id: str
    state: str
    video_url: str = ""
    thumbnail_url: str = ""
    failure_reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class VideoRequest:
    """A generation to create, in the router's vocabulary; the client maps it per dialect."""

    prompt: str
    model_name: str = "ray-v2"
    duration: str = ""
    resolution: str = ""
    expand_prompt: bool = False
    aspect_ratio: str = ""
    loop: bool = False
    image_url: str = ""
    image_end_url: str = ""
    # Upstream ids of generations used as keyframes (official dialect: reverse extend,
    # interpolate; extend goes through `extend()` in both dialects).
    end_generation_id: str = ""
    callback_url: str = ""


class LumaClient:
    def __init__(self, http: httpx.Client, *, api_key: str = "", dialect: str = "router"):
        self.http = http
        self.api_key = api_key
        self.dialect = dialect
        # Whether the router answers `POST /luma/tasks`: None until we know.
        self.batch: bool | None = None

    # --- calls ----------------------------------------------------------------------------

    def create(self, request: VideoRequest) -> Upstream:
        if self.dialect == "official":
            data = self._request("POST", "/generations/video", json=self._official_body(request))
        else:
            data = self._request("POST", "/luma/generations", json=self._router_body(request))
        return self._parse(data)

    def extend(self, parent_id: str, request: VideoRequest) -> Upstream:
        """A new generation that starts where `parent_id` ends (or, with `end_generation_id`
        on the official dialect, interpolates between the two)."""
        if self.dialect == "official":
            body = self._official_body(request)
            body.setdefault("keyframes", {})["frame0"] = {"type": "generation", "id": parent_id}
            data = self._request("POST", "/generations/video", json=body)
        else:
            data = self._request(
                "POST", f"/luma/generations/{parent_id}/extend", json=self._router_body(request)
            )
        return self._parse(data)

    def get(self, upstream_id: str) -> Upstream:
        path = "/generations/" if self.dialect == "official" else "/luma/generations/"
        return self._parse(self._request("GET", path + upstream_id))

    def get_many(self, upstream_ids: list[str]) -> dict[str, Upstream | LumaError]:
        """Several generations in one call where the router offers `POST /luma/tasks`;
        one GET each otherwise. An id the upstream does not return counts as not found."""
        if self.dialect == "router" and self.batch is not False and len(upstream_ids) > 1:
            try:
                data = self._request("POST", "/luma/tasks", json={"ids": upstream_ids})
            except PermanentError as exc:
                if exc.status not in (404, 405):
                    raise
                self.batch = False  # this router has no batch endpoint: stop asking
            else:
                self.batch = True
                found = {}
                for item in data if isinstance(data, list) else []:
                    try:
                        upstream = self._parse(item)
                    except LumaError:
                        continue
                    found[upstream.id] = upstream
                missing = NotFound("the upstream no longer knows this generation", 404)
                return {i: found.get(i, missing) for i in upstream_ids}
        answers: dict[str, Upstream | LumaError] = {}
        for upstream_id in upstream_ids:
            try:
                answers[upstream_id] = self.get(upstream_id)
            except LumaError as exc:
                answers[upstream_id] = exc
        return answers

    def list_recent(self, limit: int = 100) -> list[Upstream]:
        """The account's newest generations (official dialect only)."""
        data = self._request("GET", "/generations", params={"limit": limit, "offset": 0})
        items = data.get("generations") if isinstance(data, dict) else None
        return [self._parse(item) for item in items or [] if isinstance(item, dict)]

    def download(self, url: str, dest: Path, *, max_bytes: int) -> int:
        """Copy `url` to `dest` atomically: an interrupted download leaves no file behind."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        size = 0
        try:
            # No Authorization header: the link points at a CDN, not at the API.
            with os.fdopen(fd, "wb") as out, self.http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise _error_for(
                        response.status_code, f"download answered {response.status_code}"
                    )
                kind = response.headers.get("content-type", "").split(";")[0].strip()
                if kind and not kind.startswith(("video/", "application/octet-stream")):
                    raise PermanentError(f"the video link returned {kind}, not a video")
                for chunk in response.iter_bytes(1024 * 256):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PermanentError(f"the video is larger than {max_bytes} bytes")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if size == 0:
                raise TransientError("the video link answered an empty file")
            os.replace(tmp_name, dest)
        except httpx.TransportError as exc:
            raise TransientError(f"the video download broke off: {exc}") from exc
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return size

    # --- dialects -------------------------------------------------------------------------

    @property
    def in_process(self) -> bool:
        """True when talking to the built-in emulator (it can read data: URIs of our files)."""
        return isinstance(self.http._transport, httpx.WSGITransport)

    @staticmethod
    def _router_body(request: VideoRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "user_prompt": request.prompt,
            "model_name": request.model_name,
            "expand_prompt": request.expand_prompt,
        }
        optional = {
            "duration": request.duration,
            "resolution": request.resolution,
            "aspect_ratio": request.aspect_ratio,
            "loop": request.loop,
            "image_url": request.image_url,
            "image_end_url": request.image_end_url,
            "notify_hook": request.callback_url,
        }
        body.update({key: value for key, value in optional.items() if value})
        return body

    @staticmethod
    def _official_body(request: VideoRequest) -> dict[str, Any]:
        model = OFFICIAL_MODELS.get(request.model_name, request.model_name)
        body: dict[str, Any] = {"model": model}
        if request.prompt:
            body["prompt"] = request.prompt
        if request.aspect_ratio:
            body["aspect_ratio"] = request.aspect_ratio
        if request.loop:
            body["loop"] = True
        if model != "ray-1-6":
            if request.duration:
                body["duration"] = f"{request.duration.removesuffix('s')}s"
            if request.resolution:
                body["resolution"] = request.resolution
        keyframes = {}
        if request.image_url:
            keyframes["frame0"] = {"type": "image", "url": request.image_url}
        if request.image_end_url:
            keyframes["frame1"] = {"type": "image", "url": request.image_end_url}
        if request.end_generation_id:
            keyframes["frame1"] = {"type": "generation", "id": request.end_generation_id}
        if keyframes:
            body["keyframes"] = keyframes
        if request.callback_url:
            body["callback_url"] = request.callback_url
        return body

    def _parse(self, data: Any) -> Upstream:
        # Some routers answer a create with a one-element array.
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict) or not data.get("id"):
            raise TransientError("the upstream answered without a generation id")
        state = STATES.get(str(data.get("state") or "").lower(), "dreaming")
        if self.dialect == "official":
            assets = data.get("assets") or {}
            video_url, thumbnail = assets.get("video") or "", assets.get("image") or ""
        else:
            video = data.get("video") or {}
            # download_url is the clean file; url may be watermarked.
            video_url = video.get("download_url") or video.get("url") or ""
            thumbnail = data.get("thumbnail") or ""
        return Upstream(
            id=str(data["id"]),
            state=state,
            video_url=video_url if isinstance(video_url, str) else "",
            thumbnail_url=thumbnail if isinstance(thumbnail, str) else "",
            failure_reason=str(data.get("failure_reason") or ""),
            raw=data,
        )

    # --- transport ------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never reached the upstream: safe to send again.
            raise TransientError(f"could not reach Luma: {exc}") from exc
        except (httpx.TimeoutException, httpx.TransportError, OSError) as exc:
            # It went out; whether it took effect is unknown.
            if method == "GET":
                raise TransientError(f"Luma did not answer: {exc}") from exc
            raise AmbiguousError(f"Luma did not answer: {exc}") from exc
        if response.status_code >= 400:
            raise _error_for(
                response.status_code,
                _error_message(response),
                retry_after=_retry_after(response.headers.get("retry-after")),
            )
        try:
            return response.json()
        except ValueError as exc:
            if method == "GET":
                raise TransientError("Luma answered something that is not JSON") from exc
            raise AmbiguousError("Luma answered something that is not JSON") from exc


def _error_for(status: int, message: str, retry_after: float | None = None) -> LumaError:
    if status == 404:
        return NotFound(message, status)
    if status == 429 or status >= 500:
        return TransientError(message, status, retry_after)
    return PermanentError(message, status)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list) and detail:
            first = detail[0]
            return str(first.get("msg", first) if isinstance(first, dict) else first)
    return f"HTTP {response.status_code}"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def build_client() -> LumaClient:
    timeout = httpx.Timeout(settings.LUMA_TIMEOUT_SECONDS, connect=5.0)
    if settings.LUMA_API_KEY:
        http = httpx.Client(base_url=settings.LUMA_BASE_URL, timeout=timeout)
        return LumaClient(http, api_key=settings.LUMA_API_KEY, dialect=settings.LUMA_API_DIALECT)
    from luma_emulator import Emulator

    emulator = Emulator.from_env(settings.LUMA_EMULATOR_DIR)
    base = EMULATOR_BASE_URL
    if settings.LUMA_API_DIALECT == "official":
        base += "/dream-machine/v1"
    http = httpx.Client(transport=httpx.WSGITransport(app=emulator), base_url=base, timeout=timeout)
    return LumaClient(
        http, api_key=os.environ.get("LUMA_EMULATOR_API_KEY", ""), dialect=settings.LUMA_API_DIALECT
    )


@cache
def client() -> LumaClient:
    """The process's client (httpx clients are thread-safe and pool connections)."""
    return build_client()
