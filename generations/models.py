"""A Generation is one video a person asked Luma for, from the form to the stored file.

States, in order:

    WAITING     ours: in our queue, waiting for one of the account's LUMA_MAX_CONCURRENT slots
    SUBMITTING  ours: stored, the upstream has not accepted it yet (a task is sending it)
    QUEUED      the upstream's: accepted, waiting for a GPU
    DREAMING    the upstream's: rendering
    STORING     the upstream finished; we are copying the video into our storage
    COMPLETED   terminal: our copy of the video and its poster are stored
    FAILED      terminal: `failure_reason` says why, in words a person understands

Every transition is one conditional UPDATE (`filter(pk=..., state__in=old).update(...)`), so two
workers can never both win, and each one is written to the event log. Every change that a person
could see bumps `updated_at`: the gallery's live updates ask for rows changed since a cursor.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Count, Exists, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac

if TYPE_CHECKING:
    from generations.luma import Upstream


class State(models.TextChoices):
    WAITING = "waiting", "Waiting"
    SUBMITTING = "submitting", "Submitting"
    QUEUED = "queued", "Queued"
    DREAMING = "dreaming", "Dreaming"
    STORING = "storing", "Saving"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


IN_FLIGHT = (State.QUEUED, State.DREAMING)
# What holds one of the account's slots upstream.
UPSTREAM = (State.SUBMITTING, State.QUEUED, State.DREAMING)
TERMINAL = (State.COMPLETED, State.FAILED)
ACTIVE = (State.WAITING, State.SUBMITTING, State.QUEUED, State.DREAMING, State.STORING)


class Mode(models.TextChoices):
    TEXT = "text", "Text to video"
    IMAGE = "image", "Image to video"
    FIRST_LAST = "first_last", "First and last frame"
    EXTEND = "extend", "Extend"
    REVERSE_EXTEND = "reverse_extend", "Reverse extend"
    INTERPOLATE = "interpolate", "Interpolate"


MODEL_CHOICES = [("ray-v2", "Ray 2 (ray-v2)"), ("ray-v1", "Ray 1.6 (ray-v1)")]
ASPECT_RATIO_CHOICES = [
    ("16:9", "16:9 (landscape)"),
    ("9:16", "9:16 (portrait)"),
    ("1:1", "1:1 (square)"),
    ("4:3", "4:3"),
    ("3:4", "3:4"),
    ("21:9", "21:9 (cinema)"),
    ("9:21", "9:21"),
]
DURATION_CHOICES = [("5", "5 seconds"), ("9", "9 seconds")]
RESOLUTION_CHOICES = [("540p", "540p"), ("720p", "720p"), ("1080p", "1080p")]

# What a person chooses for a video: the form shows them, Remix refills them, Retry copies them.
SETTINGS_FIELDS = (
    "prompt",
    "model_name",
    "duration",
    "resolution",
    "aspect_ratio",
    "loop",
    "expand_prompt",
)
# Keyframes given as addresses (uploads and generations are kept as files and links).
FRAME_URL_FIELDS = ("image_url", "image_end_url")

# A generation reported "completed" without a video link is asked again this many times.
MISSING_VIDEO_POLLS = 5


class GenerationQuerySet(models.QuerySet):
    def in_flight(self) -> GenerationQuerySet:
        return self.filter(state__in=IN_FLIGHT)

    def active(self) -> GenerationQuerySet:
        return self.filter(state__in=ACTIVE)

    def due(self, now=None) -> GenerationQuerySet:
        return self.filter(next_poll_at__lte=now or timezone.now())

    def unclaimed(self, now=None) -> GenerationQuerySet:
        return self.filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now or timezone.now())
        )

    def anything_changed_since(self, cursor) -> bool:
        """`changed_since(cursor).exists()` for the hottest path there is (every open gallery
        asks every couple of seconds), as one prepared statement: it spares the ORM's
        compilation, most of the cost of an answer that is almost always "no"."""
        table = connection.ops.quote_name(Generation._meta.db_table)
        value = connection.ops.adapt_datetimefield_value(cursor)
        with connection.cursor() as sql:
            sql.execute(f"SELECT 1 FROM {table} WHERE updated_at > %s LIMIT 1", [value])  # noqa: S608
            return sql.fetchone() is not None

    def changed_since(self, cursor) -> GenerationQuerySet:
        return self.filter(updated_at__gt=cursor)

    def mark_queue_positions(self, generations: list[Generation]) -> None:
        """Set `queue_position` (1 = next to go) on the waiting ones among `generations`:
        a handful of queries, and none when nothing shown is waiting."""
        if not any(generation.state == State.WAITING for generation in generations):
            return
        line = {g.pk: n for n, g in enumerate(Generation.objects.next_in_line(1000), start=1)}
        for generation in generations:
            generation.queue_position = line.get(generation.pk)

    def postpone_polls(self, generations: list[Generation]) -> None:
        """Polled, and nothing changed: set each one's next poll in one statement per 500.
        updated_at stays, so open galleries are not told of a change that is not one."""
        for generation in generations:
            generation.next_poll_at = timezone.now() + timedelta(seconds=generation.poll_delay())
            generation.poll_errors = 0
        self.bulk_update(generations, ["next_poll_at", "poll_errors"], batch_size=500)

    def holding_a_slot(self) -> GenerationQuerySet:
        return self.filter(state__in=UPSTREAM)

    def next_in_line(self, limit: int) -> list[Generation]:
        """The waiting generations to send next, taking turns between people so that one
        person's long batch cannot starve the others: whoever has fewer generations upstream
        goes first, then whoever was served longest ago, then the oldest request."""
        waiting = list(self.filter(state=State.WAITING).order_by("created_at", "id")[:1000])
        owners = {generation.owner_id for generation in waiting}
        per_owner = list(
            Generation.objects.filter(owner__in=owners)
            .order_by()
            .values("owner")
            .annotate(busy=Count("id", filter=Q(state__in=UPSTREAM)), served=Max("submitted_at"))
        )
        busy = {row["owner"]: row["busy"] for row in per_owner}
        served = {row["owner"]: row["served"] for row in per_owner}
        never = datetime.min.replace(tzinfo=UTC)
        turns: dict[int, int] = {}
        ranked = []
        for generation in waiting:
            owner = generation.owner_id
            turns[owner] = turns.get(owner, busy.get(owner, 0)) + 1
            key = (turns[owner], served.get(owner) or never, generation.created_at, generation.id)
            ranked.append((key, generation))
        ranked.sort(key=lambda item: item[0])
        return [generation for _, generation in ranked[:limit]]

    def for_gallery(self) -> GenerationQuerySet:
        return self.select_related("owner").order_by("-created_at", "-id")

    # --- the shared gallery: chainable filters ------------------------------------------------

    def visible_to(self, user) -> GenerationQuerySet:
        """What `user` may see: everything not deleted; hidden ones only for staff."""
        qs = self.filter(deleted_at=None)
        return qs if user.is_staff else qs.filter(hidden=False)

    def mine(self, user) -> GenerationQuerySet:
        return self.filter(owner=user)

    def starred_by(self, user) -> GenerationQuerySet:
        return self.filter(Exists(Star.objects.filter(generation=OuterRef("pk"), user=user)))

    def with_stars(self, user) -> GenerationQuerySet:
        """Annotate `starred` (by `user`) and `star_count`, without a query per card."""
        return self.annotate(
            starred=Exists(Star.objects.filter(generation=OuterRef("pk"), user=user)),
            star_count=Coalesce(
                Subquery(
                    Star.objects.filter(generation=OuterRef("pk"))
                    .order_by()
                    .values("generation")
                    .annotate(n=Count("pk"))
                    .values("n")[:1]
                ),
                0,
            ),
        )

    def with_state(self, group: str) -> GenerationQuerySet:
        """`group` is a gallery filter: "working", "completed" or "failed"."""
        if group == "working":
            return self.filter(state__in=ACTIVE)
        if group in (State.COMPLETED, State.FAILED):
            return self.filter(state=group)
        return self

    def with_model(self, model_name: str) -> GenerationQuerySet:
        return self.filter(model_name=model_name) if model_name else self

    def owned_by(self, username: str) -> GenerationQuerySet:
        return self.filter(owner__username=username) if username else self

    def search(self, text: str) -> GenerationQuerySet:
        qs = self
        for word in text.split()[:8]:
            qs = qs.filter(Q(prompt__icontains=word) | Q(title__icontains=word))
        return qs

    def ordered(self, oldest_first: bool = False) -> GenerationQuerySet:
        if oldest_first:
            return self.order_by("created_at", "id")
        return self.order_by("-created_at", "-id")

    def page_after(self, created_at, pk: int, oldest_first: bool = False) -> GenerationQuerySet:
        """Keyset pagination on (created_at, id): the rows after the last one shown."""
        if oldest_first:
            return self.filter(Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=pk))
        return self.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk))

    def completed_sources(self) -> GenerationQuerySet:
        """Generations another can start or end on (extend, interpolate, ...)."""
        return self.filter(state=State.COMPLETED).exclude(upstream_id="")


class Generation(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations"
    )
    title = models.CharField(max_length=200, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.TEXT)
    prompt = models.TextField(blank=True)
    model_name = models.CharField("model", max_length=20, choices=MODEL_CHOICES, default="ray-v2")
    duration = models.CharField(max_length=4, choices=DURATION_CHOICES, blank=True)
    resolution = models.CharField(max_length=8, choices=RESOLUTION_CHOICES, blank=True)
    aspect_ratio = models.CharField(max_length=5, choices=ASPECT_RATIO_CHOICES, default="16:9")
    loop = models.BooleanField(default=False)
    expand_prompt = models.BooleanField(default=False)
    # Keyframes. The first frame is an image (an upload, or a URL) or a generation (`parent`:
    # extend, interpolate); the last frame likewise (`end_parent`: reverse extend, interpolate).
    image_url = models.URLField("first frame URL", max_length=2000, blank=True)
    image_end_url = models.URLField("last frame URL", max_length=2000, blank=True)
    first_frame = models.FileField(upload_to="frames/", blank=True)
    last_frame = models.FileField(upload_to="frames/", blank=True)
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="extensions"
    )
    end_parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Curation: staff can hide a generation from the shared gallery; a deleted one stays as a
    # tombstone until the gallery's live updates have told every open page.
    hidden = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)

    state = models.CharField(max_length=12, choices=State.choices, default=State.WAITING)
    # The first person-readable failure is kept in failure_reason; a technical note for admins.
    failure_detail = models.TextField(blank=True)
    upstream_id = models.CharField(max_length=100, blank=True, db_index=True)
    failure_reason = models.TextField(blank=True)
    # The upstream's last answer, for admins; never shown to users as is.
    upstream_response = models.JSONField(null=True, blank=True)
    # The upstream's link to the finished video: it expires, so we copy the file at once.
    video_url = models.URLField(max_length=4000, blank=True)
    video = models.FileField(upload_to="videos/", blank=True)
    poster = models.FileField(upload_to="posters/", blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    # When the poller should next ask the upstream (or retry a submit or a store).
    next_poll_at = models.DateTimeField(null=True, blank=True)
    # A task working on this row holds it until then; a dead worker's claim simply expires.
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    poll_errors = models.PositiveIntegerField(default=0)

    objects = GenerationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="gen_newest"),
            models.Index(fields=["owner", "-created_at", "-id"], name="gen_owner_newest"),
            # The finished videos a new one can start from, newest first, without a sort.
            models.Index(fields=["state", "-created_at", "-id"], name="gen_state_newest"),
            models.Index(fields=["state", "next_poll_at"], name="gen_due"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt[:60]} ({self.get_state_display()})"

    def get_absolute_url(self) -> str:
        return reverse("generation", args=[self.code])

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE

    def callback_token(self) -> str:
        """Unguessable and per generation: Luma's callbacks are unsigned."""
        return salted_hmac("lumaweb.callback", str(self.code), algorithm="sha256").hexdigest()[:32]

    @property
    def version(self) -> str:
        """Changes whenever the card would render differently."""
        return f"{self.updated_at.timestamp():.6f}"

    # --- curation: each change bumps updated_at so open galleries hear of it -------------------

    def can_be_changed_by(self, user) -> bool:
        return user.is_staff or self.owner_id == user.pk

    def _curate(self, **fields: Any) -> None:
        fields["updated_at"] = timezone.now()
        Generation.objects.filter(pk=self.pk).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)

    def rename(self, title: str) -> None:
        self._curate(title=title.strip())

    def set_hidden(self, hidden: bool) -> None:
        self._curate(hidden=hidden)

    def star(self, user) -> None:
        Star.objects.get_or_create(user=user, generation=self)
        self._curate()

    def unstar(self, user) -> None:
        Star.objects.filter(user=user, generation=self).delete()
        self._curate()

    def soft_delete(self) -> None:
        """A tombstone for the live updates; the stored files go at once (those no other
        generation uses: a retry or a remix shares its source's frames)."""
        with transaction.atomic():
            self._curate(deleted_at=timezone.now())
        for field in ("video", "poster", "first_frame", "last_frame"):
            name = getattr(self, field).name
            if not name:
                continue
            shared = (
                Generation.objects.filter(deleted_at=None)
                .filter(Q(**{field: name}) | Q(**{"first_frame": name}) | Q(last_frame=name))
                .exists()
            )
            if not shared:
                getattr(self, field).storage.delete(name)

    @property
    def display_title(self) -> str:
        return self.title or self.prompt or self.get_mode_display()

    def as_remix_initial(self) -> dict[str, Any]:
        """The form's initial values for "Remix": the same settings, ready to change."""
        initial: dict[str, Any] = {
            name: getattr(self, name) for name in ("mode", *SETTINGS_FIELDS, *FRAME_URL_FIELDS)
        }
        initial["first_frame_ref"] = self.first_frame.name.removeprefix("frames/")
        initial["last_frame_ref"] = self.last_frame.name.removeprefix("frames/")
        if self.parent_id:
            initial["parent"] = self.parent.code if self.parent else ""
        if self.end_parent_id:
            initial["end_parent"] = self.end_parent.code if self.end_parent else ""
        return initial

    def copy_for(self, owner) -> Generation:
        """A new generation with the same settings (Retry); it shares the uploaded frames."""
        fields = [
            "title",
            "mode",
            *SETTINGS_FIELDS,
            *FRAME_URL_FIELDS,
            "first_frame",
            "last_frame",
            "parent_id",
            "end_parent_id",
        ]
        return Generation.objects.create(
            owner=owner, **{name: getattr(self, name) for name in fields}
        )

    def lineage(self, limit: int = 50) -> list[Generation]:
        """The chain of extends this one is part of: its ancestors, oldest first, then itself."""
        chain = [self]
        seen = {self.pk}
        current = self
        while current.parent_id and len(chain) < limit:
            parent = Generation.objects.select_related("owner").filter(pk=current.parent_id).first()
            if parent is None or parent.pk in seen:
                break
            chain.append(parent)
            seen.add(parent.pk)
            current = parent
        return chain[::-1]

    # --- transitions ----------------------------------------------------------------------

    def _transition(
        self, to: str, *, from_states: tuple[str, ...], detail: str = "", **fields: Any
    ) -> bool:
        """Move to `to` if the row is still in one of `from_states`; record it. One winner."""
        now = timezone.now()
        fields["updated_at"] = now
        with transaction.atomic():
            won = Generation.objects.filter(pk=self.pk, state__in=from_states).update(
                state=to, **fields
            )
            if won:
                GenerationEvent.objects.create(
                    generation_id=self.pk, at=now, from_state=self.state, to_state=to, detail=detail
                )
        if won:
            self.state = to
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(won)

    def mark_submitting(self) -> bool:
        return self._transition(
            State.SUBMITTING, from_states=(State.WAITING,), detail="sent to Luma"
        )

    def claim(self, seconds: float) -> bool:
        """Hold this row for one task for `seconds`; False if another task holds it."""
        now = timezone.now()
        until = now + timedelta(seconds=seconds)
        won = (
            Generation.objects.filter(pk=self.pk, state=self.state)
            .unclaimed(now)
            .update(claimed_until=until, attempts=models.F("attempts") + 1)
        )
        if won:
            self.claimed_until = until
            self.attempts += 1
        return bool(won)

    def sending_for(self) -> timedelta:
        """How long since it left our queue (its time in our queue does not count)."""
        left_queue = (
            self.events.filter(to_state=State.SUBMITTING)
            .order_by("-at")
            .values_list("at", flat=True)
            .first()
        )
        return timezone.now() - (left_queue or self.created_at)

    def refund_attempt(self) -> None:
        Generation.objects.filter(pk=self.pk, attempts__gt=0).update(
            attempts=models.F("attempts") - 1
        )
        self.attempts = max(0, self.attempts - 1)

    def release(self, retry_in: float | None = None) -> None:
        """Let go of the claim; with `retry_in`, the poller's sweep tries again then."""
        next_at = timezone.now() + timedelta(seconds=retry_in) if retry_in is not None else None
        Generation.objects.filter(pk=self.pk).update(claimed_until=None, next_poll_at=next_at)
        self.claimed_until, self.next_poll_at = None, next_at

    def mark_submitted(self, upstream: Upstream, detail: str = "") -> bool:
        state = upstream.state if upstream.state in IN_FLIGHT else State.QUEUED
        return self._transition(
            state,
            from_states=(State.SUBMITTING,),
            detail=detail or f"accepted upstream as {upstream.id}",
            upstream_id=upstream.id,
            upstream_response=upstream.raw,
            submitted_at=timezone.now(),
            next_poll_at=timezone.now() + timedelta(seconds=settings.LUMA_POLL_SECONDS),
            claimed_until=None,
            poll_errors=0,
            attempts=0,
        )

    def postpone_reconcile(self, seconds: float) -> None:
        """Leave the claim looking abandoned, so the sweep reconciles again in `seconds`."""
        now = timezone.now()
        Generation.objects.filter(pk=self.pk).update(
            claimed_until=now, next_poll_at=now + timedelta(seconds=seconds)
        )

    def touch(self, detail: str) -> None:
        """Record something that happened without a change of state; open pages refresh."""
        now = timezone.now()
        Generation.objects.filter(pk=self.pk).update(updated_at=now)
        GenerationEvent.objects.create(
            generation_id=self.pk, at=now, from_state=self.state, to_state=self.state, detail=detail
        )

    def poll_delay(self) -> float:
        """Quick at first, slower for long generations, slower still after errors."""
        base = settings.LUMA_POLL_SECONDS
        age = (timezone.now() - (self.submitted_at or self.created_at)).total_seconds()
        if age > 120:
            base *= 2.5
        return min(base * (2**self.poll_errors), 60.0)

    def apply_upstream(self, upstream: Upstream) -> bool:
        """Take in what the upstream says of this generation. True when the card changed."""
        now = timezone.now()
        if upstream.state == State.FAILED:
            return self.mark_failed(
                upstream.failure_reason or "Luma could not make this video.",
                raw=upstream.raw,
            )
        if upstream.state == State.COMPLETED:
            if upstream.video_url:
                return self._transition(
                    State.STORING,
                    from_states=IN_FLIGHT,
                    detail="finished upstream",
                    video_url=upstream.video_url,
                    upstream_response=upstream.raw,
                    next_poll_at=now + timedelta(seconds=60),
                    poll_errors=0,
                    attempts=0,
                )
            # Luma can say "completed" a poll before the link appears: ask again, briefly.
            if self.poll_errors + 1 >= MISSING_VIDEO_POLLS:
                return self.mark_failed(
                    "Luma finished the video but never gave a link to it.", raw=upstream.raw
                )
            Generation.objects.filter(pk=self.pk).update(
                poll_errors=models.F("poll_errors") + 1,
                next_poll_at=now + timedelta(seconds=settings.LUMA_POLL_SECONDS),
            )
            return False
        # Still queued or dreaming (an unknown upstream word counts as still dreaming).
        if upstream.state != self.state:
            return self._transition(
                upstream.state,
                from_states=IN_FLIGHT,
                upstream_response=upstream.raw,
                next_poll_at=now + timedelta(seconds=self.poll_delay()),
                poll_errors=0,
            )
        # Nothing a person would see changed: leave updated_at alone so live updates stay 204.
        Generation.objects.filter(pk=self.pk, state=self.state).update(
            next_poll_at=now + timedelta(seconds=self.poll_delay()), poll_errors=0
        )
        return False

    def defer(self, seconds: float) -> bool:
        """Push the next sweep's look at this row back; False if another sweep got there."""
        return bool(
            Generation.objects.filter(pk=self.pk, next_poll_at=self.next_poll_at).update(
                next_poll_at=timezone.now() + timedelta(seconds=seconds)
            )
        )

    def poll_failed(self) -> None:
        """The upstream did not answer this poll: back off and try again later."""
        self.poll_errors += 1
        Generation.objects.filter(pk=self.pk).update(
            poll_errors=models.F("poll_errors") + 1,
            next_poll_at=timezone.now() + timedelta(seconds=self.poll_delay()),
        )

    def mark_completed(self, video_name: str, poster_name: str) -> bool:
        return self._transition(
            State.COMPLETED,
            from_states=(State.STORING,),
            detail="video stored",
            video=video_name,
            poster=poster_name,
            completed_at=timezone.now(),
            next_poll_at=None,
            claimed_until=None,
        )

    def mark_failed(self, reason: str, raw: Any = None, detail: str = "") -> bool:
        """`reason` is for people; `detail` (technical) and `raw` are kept for admins."""
        fields: dict[str, Any] = {
            "failure_reason": reason,
            "failure_detail": detail,
            "next_poll_at": None,
        }
        if raw is not None:
            fields["upstream_response"] = raw
        return self._transition(
            State.FAILED,
            from_states=ACTIVE,
            detail=f"{reason} ({detail})" if detail else reason,
            claimed_until=None,
            **fields,
        )


class GenerationEvent(models.Model):
    """One transition of a generation: the history its detail page shows."""

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    from_state = models.CharField(max_length=12, choices=State.choices)
    to_state = models.CharField(max_length=12, choices=State.choices)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state} -> {self.to_state}"


class Star(models.Model):
    """A person's star on a generation: their own shortlist of the shared gallery."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stars"
    )
    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="stars")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "generation"], name="one_star_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} ★ {self.generation_id}"


class Lease(models.Model):
    """A named lock with an expiry, held in the database so every process sees it."""

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def acquire(cls, name: str, holder: str, seconds: float) -> bool:
        now = timezone.now()
        cls.objects.get_or_create(name=name, defaults={"expires_at": now})
        won = cls.objects.filter(Q(expires_at__lte=now) | Q(holder=holder), name=name).update(
            holder=holder, expires_at=now + timedelta(seconds=seconds)
        )
        return bool(won)

    @classmethod
    def is_held(cls, name: str) -> bool:
        return cls.objects.filter(name=name, expires_at__gt=timezone.now()).exists()

    @classmethod
    def renew(cls, name: str, holder: str, seconds: float) -> bool:
        expires = timezone.now() + timedelta(seconds=seconds)
        return bool(cls.objects.filter(name=name, holder=holder).update(expires_at=expires))

    @classmethod
    def release(cls, name: str, holder: str) -> None:
        cls.objects.filter(name=name, holder=holder).update(expires_at=timezone.now(), holder="")
