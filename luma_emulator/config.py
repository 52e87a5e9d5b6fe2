"""The LUMA_EMULATOR_* environment variables, read strictly: a bad value names its variable."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from luma_emulator.faults import validate

PREFIX = "LUMA_EMULATOR_"


def options_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for Emulator(), from the variables that are set and not empty."""

    def get(name: str) -> str | None:
        value = environ.get(PREFIX + name)
        return value.strip() if value is not None and value.strip() else None

    options: dict[str, Any] = {}
    if (value := get("DREAM_SECONDS")) is not None:
        options["dream_seconds"] = _number(PREFIX + "DREAM_SECONDS", value)
    if (value := get("API_KEY")) is not None:
        options["api_key"] = value
    if (value := get("VOCABULARY")) is not None:
        if value not in ("luma", "sister"):
            raise ValueError(f"{PREFIX}VOCABULARY must be luma or sister, not {value!r}")
        options["vocabulary"] = value
        options["create_as_array"] = value == "sister"
    if (value := get("FAULTS")) is not None:
        options["faults"] = _faults(value)
    if (value := get("SEED")) is not None:
        options["seed"] = _integer(PREFIX + "SEED", value, minimum=None)
    if (value := get("MAX_IN_FLIGHT")) is not None:
        options["max_in_flight"] = _integer(PREFIX + "MAX_IN_FLIGHT", value, minimum=0)
    if (value := get("CREATES_PER_MINUTE")) is not None:
        options["creates_per_minute"] = _integer(PREFIX + "CREATES_PER_MINUTE", value, minimum=0)
    value = environ.get(PREFIX + "BLACKLIST")
    if value is not None:
        options["blacklist"] = tuple(w.strip() for w in value.split(",") if w.strip())
    return options


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return number


def _integer(name: str, value: str, minimum: int | None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {number}")
    return number


def _faults(value: str) -> dict[str, Any]:
    """JSON text, or the path of a JSON file."""
    name = PREFIX + "FAULTS"
    if value.startswith("{"):
        text, where = value, name
    else:
        path = Path(value).expanduser()
        try:
            text = path.read_text()
        except OSError as error:
            raise ValueError(f"{name}: cannot read {path}: {error.strerror}") from None
        where = f"{name} ({path})"
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{where} is not valid JSON: {error}") from None
    try:
        return validate(config, name)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
