"""CPU seconds to render a 5 s text-to-video clip with the Luma emulator, per resolution.

Prints one JSON object per line: {"name": "emulator_render_<res>", "value": <cpu seconds>,
"unit": "s", "resolution": ..., "duration": 5}, the median of 3 renders (libx264's threads
count: time.process_time covers the whole process). Goal: 720p under 1.5 s.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from luma_emulator.render import Clip, frame_size, render

PROMPT = "A drone shot flying over a tropical island with crystal clear water"
RUNS = 3


def cpu_seconds(resolution: str, directory: Path) -> float:
    width, height = frame_size(resolution, "16:9")
    clip = Clip(width, height, 5, prompt=PROMPT, label=f"luma emulator · ray-2 · {resolution}")
    timings = []
    for run in range(RUNS):
        started = time.process_time()
        render(
            clip,
            directory / f"{resolution}-{run}.mp4",
            directory / f"{resolution}-{run}.jpg",
            directory / f"{resolution}-{run}-last.jpg",
        )
        timings.append(time.process_time() - started)
    return statistics.median(timings)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        for resolution in ("540p", "720p", "1080p"):
            value = cpu_seconds(resolution, Path(directory))
            print(
                json.dumps(
                    {
                        "name": f"emulator_render_{resolution}",
                        "value": round(value, 3),
                        "unit": "s",
                        "resolution": resolution,
                        "duration": 5,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
