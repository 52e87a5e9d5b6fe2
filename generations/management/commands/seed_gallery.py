"""Fake generations in mixed states, to try the gallery at size:

    python manage.py seed_gallery --count 1000 --owners 5

The finished ones share one small real video and its poster. Nothing seeded is ever sent to
Luma: they are finished, failed, or marked in progress with nothing for the worker to poll.
"""

from __future__ import annotations

import random
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from generations.models import Generation, Mode, Star, State
from generations.posters import make_poster

VIDEO_NAME = "videos/seed-sample.mp4"
POSTER_NAME = "posters/seed-sample.jpg"
SUBJECTS = [
    "a red fox", "a paper boat", "a lighthouse", "an old tram", "a hummingbird", "a glass city",
    "a desert caravan", "a koi pond", "a snow leopard", "a neon alley", "a wheat field",
    "a jellyfish", "a mountain monastery", "a vintage car", "a hot air balloon",
]  # fmt: skip
ACTIONS = [
    "drifting through", "racing across", "glowing above", "circling around", "waking up in",
    "dissolving into", "hovering over", "dancing in",
]  # fmt: skip
PLACES = [
    "fresh snow", "a stormy sea", "golden hour light", "a rainy night", "the morning fog",
    "a field of lanterns", "the northern lights", "a quiet harbour",
]  # fmt: skip
STYLES = ["cinematic", "drone shot", "macro lens", "35mm film", "slow motion", "tilt-shift"]
REASONS = ["Contains blacklisted words", "Frame moderation failed", "Prompt processing failed"]
# state: share of the seeded rows
STATES = [
    (State.COMPLETED, 0.75),
    (State.FAILED, 0.12),
    (State.DREAMING, 0.08),
    (State.QUEUED, 0.05),
]


class Command(BaseCommand):
    help = "Makes fake generations in mixed states for trying the gallery at size."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count", type=int, default=1000)
        parser.add_argument("--owners", type=int, default=5)
        parser.add_argument("--seed", type=int, default=None, help="for the same gallery twice")

    def handle(self, *args, count: int, owners: int, seed: int | None, **options) -> None:
        if count < 0 or owners < 1:
            raise CommandError("--count must be 0 or more and --owners at least 1")
        rng = random.Random(seed)
        ensure_sample_files()
        people = ensure_owners(owners)
        now = timezone.now()
        rows = [make_row(rng, rng.choice(people), now) for _ in range(count)]
        with transaction.atomic():
            Generation.objects.bulk_create(rows, batch_size=500)
            made = list(
                Generation.objects.filter(code__in=[row.code for row in rows]).values_list(
                    "pk", flat=True
                )
            )
            stars = {(rng.choice(people).pk, rng.choice(made)) for _ in range(count // 5)}
            Star.objects.bulk_create(
                [Star(user_id=user, generation_id=gen) for user, gen in stars],
                batch_size=500,
                ignore_conflicts=True,
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Made {count} generations for {owners} owners ({len(stars)} stars)."
            )
        )


def ensure_owners(owners: int) -> list:
    """seed-1, seed-2, ...: teammates with no usable password (log in as yourself)."""
    User = get_user_model()
    people = []
    for n in range(1, owners + 1):
        user, created = User.objects.get_or_create(username=f"seed-{n}")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        people.append(user)
    return people


def make_row(rng: random.Random, owner, now) -> Generation:
    state = rng.choices([s for s, _ in STATES], weights=[w for _, w in STATES])[0]
    created = now - timedelta(seconds=rng.uniform(60, 90 * 24 * 3600))
    model = rng.choice(["ray-v2", "ray-v2", "ray-v1"])
    prompt = (
        f"{rng.choice(STYLES).capitalize()}: {rng.choice(SUBJECTS)} "
        f"{rng.choice(ACTIONS)} {rng.choice(PLACES)}"
    )
    row = Generation(
        owner=owner,
        prompt=prompt,
        title=prompt.split(": ", 1)[1].title()[:60] if rng.random() < 0.2 else "",
        mode=Mode.TEXT,
        model_name=model,
        duration="" if model == "ray-v1" else rng.choice(["5", "9"]),
        resolution="" if model == "ray-v1" else rng.choice(["540p", "720p", "1080p"]),
        aspect_ratio=rng.choice(["16:9", "16:9", "9:16", "1:1"]),
        state=state,
        created_at=created,
        updated_at=created,
        hidden=rng.random() < 0.02,
        # Nothing for the worker: no upstream to poll, no time to poll it.
        upstream_id=f"seed-{rng.getrandbits(64):016x}",
        next_poll_at=None,
    )
    if state == State.COMPLETED:
        row.video, row.poster = VIDEO_NAME, POSTER_NAME
        row.completed_at = created + timedelta(seconds=rng.uniform(40, 200))
        row.updated_at = row.completed_at
    elif state == State.FAILED:
        row.failure_reason = rng.choice(REASONS)
    return row


def ensure_sample_files() -> None:
    """One small real video (2 s, 320x180) and its poster, shared by every seeded one."""
    if default_storage.exists(VIDEO_NAME) and default_storage.exists(POSTER_NAME):
        return
    video = Path(default_storage.path(VIDEO_NAME))
    video.parent.mkdir(parents=True, exist_ok=True)
    width, height, fps = 320, 180, 24
    with av.open(str(video), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        x = np.linspace(0, 1, width)[None, :, None]
        y = np.linspace(0, 1, height)[:, None, None]
        for i in range(fps * 2):
            t = i / (fps * 2)
            rgb = np.concatenate(
                [(x + t) % 1 * 255 + 0 * y, y * 200 + 0 * x, (1 - x) * 180 + 40 * t + 0 * y], axis=2
            ).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    make_poster(video, Path(default_storage.path(POSTER_NAME)))
