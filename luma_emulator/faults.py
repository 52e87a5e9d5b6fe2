"""Faults on demand: a plain dict, validated here, drawn from a seeded random generator.

    {
      "seed": 7,                                   # optional; else the Emulator's seed
      "endpoints": {
        "*":      {"latency": 0.05},               # applies to every API endpoint
        "create": {"errors": {"500": 0.1, "503": 0.05}, "rate_limit": 0.1, "retry_after": 2,
                   "hang": 0.05, "hang_seconds": 30, "drop": 0.1, "malformed": 0.05},
        "get":    {"malformed": 0.2}
      },
      "generations": {
        "match": "flaky",                          # optional: only prompts containing this
        "fail": 0.2, "fail_reason": "Prompt processing failed",
        "incomplete": 0.5,                         # reads "completed" once without a video
        "stuck": 0.1,                              # never finishes
        "forget": 0.1, "forget_after": 30          # 404 this long after it completed
      }
    }

One draw per request picks at most one outcome among the errors, rate_limit, hang, drop and
malformed of its endpoint (their probabilities add up to at most 1); latency is added to every
answer. An endpoint's own settings override the same keys of "*".
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from typing import Any

ENDPOINTS = frozenset(
    {
        "create",
        "get",
        "extend",
        "tasks",
        "list",
        "delete",
        "download",
        "credits",
        "ping",
        "concepts",
    }
)
ERROR_STATUSES = frozenset({500, 502, 503})
ENDPOINT_KEYS = frozenset(
    {"errors", "rate_limit", "retry_after", "latency", "hang", "hang_seconds", "drop", "malformed"}
)
GENERATION_KEYS = frozenset(
    {"match", "fail", "fail_reason", "incomplete", "stuck", "forget", "forget_after"}
)
DEFAULT_FAIL_REASON = "Prompt processing failed"
DEFAULT_RETRY_AFTER = 1.0
DEFAULT_HANG_SECONDS = 60.0
DEFAULT_FORGET_AFTER = 30.0


@dataclass(frozen=True)
class RequestFault:
    """What to do to one request: `outcome` is None, "error", "rate_limit", "hang", "drop" or
    "malformed"."""

    latency: float = 0.0
    outcome: str | None = None
    status: int = 0
    retry_after: float = DEFAULT_RETRY_AFTER
    hang_seconds: float = DEFAULT_HANG_SECONDS


@dataclass(frozen=True)
class GenerationFault:
    fail_reason: str | None = None
    incomplete: bool = False
    stuck: bool = False
    forget_after: float | None = None


class Faults:
    def __init__(self, config: dict[str, Any] | None = None, seed: int | None = None) -> None:
        self.config = validate({} if config is None else config)
        seed = self.config.get("seed", seed)
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def _draw(self) -> float:
        with self._lock:
            return self._random.random()

    def for_request(self, endpoint: str) -> RequestFault:
        endpoints = self.config.get("endpoints", {})
        settings = {**endpoints.get("*", {}), **endpoints.get(endpoint, {})}
        if not settings:
            return RequestFault()
        latency = settings.get("latency", 0.0)
        if isinstance(latency, list):
            low, high = latency
            latency = low + (high - low) * self._draw()
        choices: list[tuple[str, int, float]] = [
            ("error", int(status), p) for status, p in sorted(settings.get("errors", {}).items())
        ]
        choices += [(name, 0, settings.get(name, 0.0)) for name in ("rate_limit", "hang", "drop")]
        choices.append(("malformed", 0, settings.get("malformed", 0.0)))
        outcome, status = None, 0
        if any(p for _, _, p in choices):
            r = self._draw()
            for name, code, p in choices:
                if r < p:
                    outcome, status = name, code
                    break
                r -= p
        return RequestFault(
            latency=float(latency),
            outcome=outcome,
            status=status,
            retry_after=float(settings.get("retry_after", DEFAULT_RETRY_AFTER)),
            hang_seconds=float(settings.get("hang_seconds", DEFAULT_HANG_SECONDS)),
        )

    def for_generation(self, prompt: str) -> GenerationFault:
        settings = self.config.get("generations", {})
        if not settings:
            return GenerationFault()
        match = settings.get("match")
        if match and match.lower() not in (prompt or "").lower():
            return GenerationFault()
        fail = self._chance(settings.get("fail", 0.0))
        incomplete = self._chance(settings.get("incomplete", 0.0))
        stuck = self._chance(settings.get("stuck", 0.0))
        forget = self._chance(settings.get("forget", 0.0))
        return GenerationFault(
            fail_reason=settings.get("fail_reason", DEFAULT_FAIL_REASON) if fail else None,
            incomplete=incomplete,
            stuck=stuck,
            forget_after=settings.get("forget_after", DEFAULT_FORGET_AFTER) if forget else None,
        )

    def _chance(self, p: float) -> bool:
        # Draw even when p is 0 or 1 so that one setting does not shift the others' sequence.
        return self._draw() < p


def validate(config: Any, name: str = "faults") -> dict[str, Any]:
    """The config itself when it follows the schema above, else ValueError saying what is wrong."""
    if not isinstance(config, dict):
        raise ValueError(f"{name} must be a JSON object, not {type(config).__name__}")
    _only(config, {"seed", "endpoints", "generations"}, name)
    if "seed" in config and (not isinstance(config["seed"], int) or config["seed"] is True):
        raise ValueError(f"{name}.seed must be an integer")
    endpoints = config.get("endpoints", {})
    if not isinstance(endpoints, dict):
        raise ValueError(f"{name}.endpoints must be an object of endpoint name -> settings")
    for endpoint, settings in endpoints.items():
        where = f"{name}.endpoints.{endpoint}"
        if endpoint != "*" and endpoint not in ENDPOINTS:
            known = ", ".join(sorted(ENDPOINTS))
            raise ValueError(f"{where}: unknown endpoint (known: *, {known})")
        if not isinstance(settings, dict):
            raise ValueError(f"{where} must be an object")
        _only(settings, ENDPOINT_KEYS, where)
        errors = settings.get("errors", {})
        if not isinstance(errors, dict):
            raise ValueError(f'{where}.errors must be an object like {{"500": 0.1}}')
        for status, p in errors.items():
            if not str(status).isdigit() or int(status) not in ERROR_STATUSES:
                raise ValueError(f"{where}.errors: status {status} is not one of 500, 502, 503")
            _probability(p, f"{where}.errors.{status}")
        for key in ("rate_limit", "hang", "drop", "malformed"):
            _probability(settings.get(key, 0.0), f"{where}.{key}")
        for key in ("retry_after", "hang_seconds"):
            _seconds(settings.get(key, 0.0), f"{where}.{key}")
        latency = settings.get("latency", 0.0)
        if isinstance(latency, list):
            if len(latency) != 2:
                raise ValueError(f"{where}.latency must be seconds or [min, max] seconds")
            for value in latency:
                _seconds(value, f"{where}.latency")
        else:
            _seconds(latency, f"{where}.latency")
    for endpoint in endpoints:
        merged = {**endpoints.get("*", {}), **endpoints[endpoint]}
        total = sum(merged.get("errors", {}).values()) + sum(
            merged.get(key, 0.0) for key in ("rate_limit", "hang", "drop", "malformed")
        )
        if total > 1 + 1e-9:
            raise ValueError(
                f"{name}.endpoints.{endpoint}: errors, rate_limit, hang, drop and malformed"
                f" add up to {total:g}, more than 1"
            )
    generations = config.get("generations", {})
    if not isinstance(generations, dict):
        raise ValueError(f"{name}.generations must be an object")
    _only(generations, GENERATION_KEYS, f"{name}.generations")
    for key in ("fail", "incomplete", "stuck", "forget"):
        _probability(generations.get(key, 0.0), f"{name}.generations.{key}")
    _seconds(generations.get("forget_after", 0.0), f"{name}.generations.forget_after")
    for key in ("match", "fail_reason"):
        if key in generations and not isinstance(generations[key], str):
            raise ValueError(f"{name}.generations.{key} must be a string")
    return config


def _only(settings: dict[str, Any], allowed: frozenset[str] | set[str], where: str) -> None:
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})"
        )


def _probability(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{where} must be a probability between 0 and 1, not {value!r}")


def _seconds(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where} must be a number of seconds, not {value!r}")
    if value < 0:
        raise ValueError(f"{where} must not be negative")
