"""The two ways of asking for a video, validated and turned into one canonical spec.

A spec is what the emulator stores and renders:

    {"prompt", "expanded_prompt", "expand_prompt", "model", "duration" (5 or 9), "resolution",
     "aspect_ratio", "loop", "frame0", "frame1", "concepts"}

with frame0/frame1 None or {"type": "image", "url"} / {"type": "generation", "id"}; model is in
the official vocabulary (ray-2, ray-flash-2, ray-1-6, and ray-3 for the router's ray-v3).
"""

from __future__ import annotations

from typing import Any

from luma_emulator.render import ASPECT_RATIOS

ROUTER_MODELS = {"ray-v1": "ray-1-6", "ray-v2": "ray-2", "ray-v3": "ray-3"}
ROUTER_MODEL_NAMES = {official: router for router, official in ROUTER_MODELS.items()}
OFFICIAL_MODELS = ("ray-2", "ray-flash-2", "ray-1-6")
ROUTER_DURATIONS = {"5": 5, "5s": 5, "9": 9, "9s": 9}
OFFICIAL_DURATIONS = {"5s": 5, "9s": 9}
ROUTER_RESOLUTIONS = ("540p", "720p", "1080p")
OFFICIAL_RESOLUTIONS = ("540p", "720p", "1080p", "4k")
DEFAULT_RESOLUTION = "720p"
DEFAULT_ASPECT_RATIO = "16:9"
MIN_PROMPT, MAX_PROMPT = 3, 5000
CONCEPTS = (
    "aerial",
    "aerial_drone",
    "bolt_cam",
    "crane_down",
    "crane_up",
    "dolly_zoom",
    "elevating",
    "eye_level",
    "ground_level",
    "handheld",
    "high_angle",
    "low_angle",
    "orbit_left",
    "orbit_right",
    "over_the_shoulder",
    "overhead",
    "pan_left",
    "pan_right",
    "pedestal_down",
    "pedestal_up",
    "pov",
    "pull_out",
    "push_in",
    "roll_left",
    "roll_right",
    "selfie",
    "static",
    "tilt_down",
    "tilt_up",
    "tiny_planet",
    "truck_left",
    "truck_right",
    "zoom_in",
    "zoom_out",
)
EXPANSION = "cinematic composition, rich natural light, smooth camera motion, fine detail"


class Invalid(Exception):
    """A request the API refuses. `schema` marks what the official API answers with 422."""

    def __init__(self, message: str, *, field: str | None = None, schema: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.schema = schema


def expand(prompt: str) -> str:
    return f"{prompt.rstrip(' .')}, {EXPANSION}"


def _prompt(value: Any, name: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise Invalid(f"{name} is required" if name != "Prompt" else "Prompt is required")
        return None
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string", field=name.lower(), schema=True)
    if len(value.strip()) < MIN_PROMPT:
        raise Invalid(f"{name} is too short, minimum length is {MIN_PROMPT} characters")
    if len(value) > MAX_PROMPT:
        raise Invalid(f"{name} is too long, maximum length is {MAX_PROMPT} characters")
    return value


def _url(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a URL string", field=name, schema=True)
    return value


def router_spec(body: dict[str, Any], parent: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spec of a router create, or of an extend of `parent` (a stored spec) when given."""
    prompt = _prompt(body.get("user_prompt"), "user_prompt", required=parent is None)
    if prompt is None and parent is not None:
        prompt = parent["prompt"]
    model_name = body.get("model_name") or (
        ROUTER_MODEL_NAMES.get(parent["model"], "ray-v2") if parent else "ray-v2"
    )
    if model_name not in ROUTER_MODELS:
        raise Invalid(f"Unknown model_name {model_name!r}: use one of {', '.join(ROUTER_MODELS)}")
    raw_duration = body.get("duration", "5")
    duration = None if isinstance(raw_duration, bool) else ROUTER_DURATIONS.get(str(raw_duration))
    if duration is None:
        raise Invalid(f"Unsupported duration {raw_duration!r}: use 5 or 9 (seconds)")
    if duration == 9 and model_name == "ray-v1":
        raise Invalid("Duration 9 is not supported by ray-v1: use 5")
    resolution = body.get("resolution") or DEFAULT_RESOLUTION
    if resolution not in ROUTER_RESOLUTIONS:
        raise Invalid(
            f"Unsupported resolution {resolution!r}: use one of {', '.join(ROUTER_RESOLUTIONS)}"
        )
    aspect_ratio = body.get("aspect_ratio") or DEFAULT_ASPECT_RATIO
    if aspect_ratio not in ASPECT_RATIOS:
        raise Invalid(
            f"Unsupported aspect_ratio {aspect_ratio!r}: use one of {', '.join(ASPECT_RATIOS)}"
        )
    loop = bool(body.get("loop", False))
    expand_prompt = bool(body.get("expand_prompt", False))
    image_url = _url(body.get("image_url"), "image_url")
    image_end_url = _url(body.get("image_end_url"), "image_end_url")
    if loop and image_end_url:
        raise Invalid("loop is not supported with image_end_url (an end frame)")
    _url(body.get("notify_hook"), "notify_hook")
    if parent is not None:
        frame0 = {"type": "generation", "id": parent["id"]}
        resolution, aspect_ratio = parent["resolution"], parent["aspect_ratio"]
    else:
        frame0 = {"type": "image", "url": image_url} if image_url else None
    return {
        "prompt": prompt,
        "expanded_prompt": expand(prompt) if expand_prompt and prompt else None,
        "expand_prompt": expand_prompt,
        "model": ROUTER_MODELS[model_name],
        "duration": duration,
        "resolution": resolution,
        "aspect_ratio": aspect_ratio,
        "loop": loop,
        "frame0": frame0,
        "frame1": {"type": "image", "url": image_end_url} if image_end_url else None,
        "concepts": [],
    }


def official_spec(body: dict[str, Any]) -> dict[str, Any]:
    """The spec of an official create. Generation keyframes are checked by the caller."""
    model = body.get("model")
    if model is None:
        raise Invalid("Field required", field="model", schema=True)
    if model not in OFFICIAL_MODELS:
        allowed = ", ".join(repr(m) for m in OFFICIAL_MODELS)
        raise Invalid(f"Input should be {allowed}", field="model", schema=True)
    generation_type = body.get("generation_type", "video")
    if generation_type not in (None, "video"):
        raise Invalid("Input should be 'video'", field="generation_type", schema=True)
    aspect_ratio = body.get("aspect_ratio") or DEFAULT_ASPECT_RATIO
    if aspect_ratio not in ASPECT_RATIOS:
        allowed = ", ".join(repr(a) for a in ASPECT_RATIOS)
        raise Invalid(f"Input should be {allowed}", field="aspect_ratio", schema=True)
    loop = body.get("loop", False)
    if loop is None:
        loop = False
    if not isinstance(loop, bool):
        raise Invalid("Input should be a valid boolean", field="loop", schema=True)
    for name in ("prompt", "duration", "resolution", "callback_url"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise Invalid("Input should be a valid string", field=name, schema=True)
    frames = _keyframes(body.get("keyframes"))
    concepts = _concepts(body.get("concepts"))

    duration, resolution = body.get("duration"), body.get("resolution")
    if model == "ray-1-6":
        if duration:
            raise Invalid("Duration is not supported in the Ray 1.6 API")
        if resolution:
            raise Invalid("Resolution is not supported in the Ray 1.6 API")
    seconds = OFFICIAL_DURATIONS.get(duration or "5s")
    if seconds is None:
        raise Invalid(f"Invalid duration {duration}: use one of {', '.join(OFFICIAL_DURATIONS)}")
    resolution = resolution or DEFAULT_RESOLUTION
    if resolution not in OFFICIAL_RESOLUTIONS:
        raise Invalid(
            f"Invalid resolution {resolution}: use one of {', '.join(OFFICIAL_RESOLUTIONS)}"
        )
    frame0, frame1 = frames if frames else (None, None)
    prompt = _prompt(body.get("prompt"), "Prompt", required=not frames)
    if loop and frame1 is not None:
        if frame1["type"] == "image":
            raise Invalid("Loop is not supported for end frame")
        if frame0 is not None and frame0["type"] == "generation":
            raise Invalid("Loop is not supported for interpolation")
        if frame0 is not None:
            raise Invalid("Loop is not supported for two keyframes")
        raise Invalid("Loop is not supported for reverse extend")
    return {
        "prompt": prompt,
        "expanded_prompt": None,
        "expand_prompt": False,
        "model": model,
        "duration": seconds,
        "resolution": resolution,
        "aspect_ratio": aspect_ratio,
        "loop": loop,
        "frame0": frame0,
        "frame1": frame1,
        "concepts": concepts,
    }


def _keyframes(value: Any) -> tuple[dict | None, dict | None] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Invalid("Input should be a valid dictionary", field="keyframes", schema=True)
    frames = []
    for name in ("frame0", "frame1"):
        frame = value.get(name)
        if frame is None:
            frames.append(None)
            continue
        where = f"keyframes.{name}"
        if not isinstance(frame, dict):
            raise Invalid("Input should be a valid dictionary", field=where, schema=True)
        kind = frame.get("type")
        if kind == "image":
            url = frame.get("url")
            if not isinstance(url, str) or not url:
                raise Invalid("Field required", field=f"{where}.url", schema=True)
            frames.append({"type": "image", "url": url})
        elif kind == "generation":
            ident = frame.get("id")
            if not isinstance(ident, str) or not ident:
                raise Invalid("Field required", field=f"{where}.id", schema=True)
            frames.append({"type": "generation", "id": ident})
        else:
            raise Invalid(
                "Input tag should be 'image' or 'generation'", field=f"{where}.type", schema=True
            )
    if frames == [None, None]:
        raise Invalid("No keyframes provided")
    return frames[0], frames[1]


def _concepts(value: Any) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid("Input should be a valid list", field="concepts", schema=True)
    concepts = []
    for n, concept in enumerate(value):
        key = concept.get("key") if isinstance(concept, dict) else None
        if not isinstance(key, str):
            raise Invalid("Field required", field=f"concepts.{n}.key", schema=True)
        if key not in CONCEPTS:
            raise Invalid(f"Unknown concept: {key}")
        concepts.append({"key": key})
    return concepts


def canonical(spec: dict[str, Any]) -> dict[str, Any]:
    """What makes two creates the same generation, whichever dialect they came in."""
    return {key: spec[key] for key in sorted(spec) if key != "expanded_prompt"}


def router_request(spec: dict[str, Any], callback_url: str | None) -> dict[str, Any]:
    """The request as a router echoes it back."""
    frame0, frame1 = spec["frame0"], spec["frame1"]
    request = {
        "user_prompt": spec["prompt"],
        "model_name": ROUTER_MODEL_NAMES.get(spec["model"], spec["model"]),
        "duration": str(spec["duration"]),
        "resolution": spec["resolution"],
        "aspect_ratio": spec["aspect_ratio"],
        "loop": spec["loop"],
        "expand_prompt": spec["expand_prompt"],
        "expanded_prompt": spec["expanded_prompt"],
        "image_url": frame0["url"] if frame0 and frame0["type"] == "image" else None,
        "image_end_url": frame1["url"] if frame1 and frame1["type"] == "image" else None,
        "notify_hook": callback_url,
    }
    if frame0 and frame0["type"] == "generation":
        request["extend_id"] = frame0["id"]
    if frame1 and frame1["type"] == "generation":
        request["reverse_extend_id"] = frame1["id"]
    return request


def official_request(spec: dict[str, Any], callback_url: str | None) -> dict[str, Any]:
    """The request as Luma's own API echoes it back."""
    keyframes = {name: spec[name] for name in ("frame0", "frame1") if spec[name]}
    legacy = spec["model"] == "ray-1-6"
    return {
        "generation_type": "video",
        "model": spec["model"],
        "prompt": spec["prompt"],
        "aspect_ratio": spec["aspect_ratio"],
        "loop": spec["loop"],
        "keyframes": keyframes or None,
        "callback_url": callback_url,
        "resolution": None if legacy else spec["resolution"],
        "duration": None if legacy else f"{spec['duration']}s",
        "concepts": spec["concepts"] or None,
    }
