from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.validators import URLValidator
from django.db.models import QuerySet

from generations import frames
from generations.models import (
    MODEL_CHOICES,
    SETTINGS_FIELDS,
    Generation,
    GenerationQuerySet,
    Mode,
)

PROMPT_MIN, PROMPT_MAX = 3, 5000
WEB_URL = URLValidator(
    schemes=["http", "https"], message="Give the image's web address (http or https)."
)
# How many recent finished videos the "Start from video" / "End on video" lists offer.
SOURCE_CHOICES = 50

# The router dialect has no keyframes made of generations other than extend's.
ROUTER_MODES = (Mode.TEXT, Mode.IMAGE, Mode.FIRST_LAST, Mode.EXTEND)
# Which fields each mode uses (the page hides the others; the form ignores them).
FIRST_IMAGE_MODES = (Mode.IMAGE, Mode.FIRST_LAST)
LAST_IMAGE_MODES = (Mode.FIRST_LAST,)
PARENT_MODES = (Mode.EXTEND, Mode.INTERPOLATE)
END_PARENT_MODES = (Mode.REVERSE_EXTEND, Mode.INTERPOLATE)
LOOP_REFUSED = {
    Mode.FIRST_LAST: "Loop is not possible with a last frame.",
    Mode.REVERSE_EXTEND: "Loop is not possible with reverse extend.",
    Mode.INTERPOLATE: "Loop is not possible when interpolating between two videos.",
}


def available_modes() -> list[tuple[str, str]]:
    """The modes the configured Luma dialect can make."""
    if settings.LUMA_API_DIALECT == "official":
        return list(Mode.choices)
    return [(value, label) for value, label in Mode.choices if value in ROUTER_MODES]


def uploads_possible() -> bool:
    """A real Luma fetches uploaded frames from SITE_URL; the built-in emulator reads them
    inline."""
    return bool(settings.SITE_URL or not settings.LUMA_API_KEY)


def frame_upload(label: str) -> forms.FileField:
    """An image file for a keyframe (checked by decoding it, in clean)."""
    return forms.FileField(
        label=label,
        required=False,
        widget=forms.FileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}),
    )


def frame_url(label: str, placeholder: str) -> forms.URLField:
    """An image's web address for a keyframe."""
    return forms.URLField(
        label=label,
        required=False,
        max_length=2000,
        assume_scheme="https",
        validators=[WEB_URL],
        error_messages={"invalid": "Give the image's web address (http or https)."},
        widget=forms.URLInput(attrs={"placeholder": placeholder}),
    )


UPLOADS_NEED_SITE_URL = (
    "Uploaded images need SITE_URL (the public address of this studio, where Luma fetches "
    "them): paste the image's URL instead, or ask an administrator to set SITE_URL."
)


class GenerateForm(forms.ModelForm):
    mode = forms.ChoiceField(label="Mode", required=False, initial=Mode.TEXT)
    prompt = forms.CharField(
        label="Prompt",
        required=False,
        min_length=PROMPT_MIN,
        max_length=PROMPT_MAX,
        strip=True,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "A drone shot over a tropical island at dawn"}
        ),
        error_messages={
            "min_length": f"Write at least {PROMPT_MIN} characters.",
            "max_length": f"Keep the prompt under {PROMPT_MAX} characters.",
        },
    )
    first_frame = frame_upload("First frame")
    image_url = frame_url("First frame URL", "https://example.com/first.jpg")
    last_frame = frame_upload("Last frame")
    image_end_url = frame_url("Last frame URL", "https://example.com/last.jpg")
    # A frame we already store (a remix's, or a video's last frame): its file name.
    first_frame_ref = forms.CharField(required=False, widget=forms.HiddenInput)
    last_frame_ref = forms.CharField(required=False, widget=forms.HiddenInput)
    parent = forms.CharField(label="Start from video", required=False, widget=forms.Select)
    end_parent = forms.CharField(label="End on video", required=False, widget=forms.Select)

    class Meta:
        model = Generation
        fields = list(SETTINGS_FIELDS)
        labels = {
            "model_name": "Model",
            "duration": "Duration",
            "resolution": "Resolution",
            "aspect_ratio": "Aspect ratio",
            "loop": "Loop",
            "expand_prompt": "Expand prompt",
        }
        help_texts = {
            "expand_prompt": "Let Luma enrich the prompt before dreaming.",
            "loop": "The video ends where it starts.",
        }

    def __init__(self, *args: Any, user=None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["mode"].choices = available_modes()
        self.fields["model_name"].error_messages["invalid_choice"] = (
            "Choose one of the models in the list."
        )
        self.fields["duration"].choices = [
            ("", "Model default"),
            *self.fields["duration"].choices[1:],
        ]
        self.fields["resolution"].choices = [
            ("", "Model default"),
            *self.fields["resolution"].choices[1:],
        ]
        # Not sent (an older page, a script): the model's default.
        self.fields["aspect_ratio"].required = False
        self.fields["duration"].initial = "5"
        self.fields["resolution"].initial = "720p"
        self.fields["duration"].help_text = "Ray 1.6 picks its own."
        self.fields["resolution"].help_text = "Ray 1.6 picks its own."
        self._jpegs: dict[str, bytes] = {}
        self._sources: dict[str, Generation] = {}

    # --- what the page shows --------------------------------------------------------------

    @property
    def current_mode(self) -> str:
        value = self["mode"].value() or Mode.TEXT
        return value if value in dict(available_modes()) else Mode.TEXT

    def source_choices(self) -> None:
        """Fill the two video lists with recent finished videos (one query), keeping the
        chosen ones even when they are older."""
        if self.user is None:
            return
        chosen = [self[name].value() for name in ("parent", "end_parent")]
        chosen = [code for code in chosen if code]
        recent: QuerySet[Generation] = (
            Generation.objects.visible_to(self.user)
            .completed_sources()
            .select_related("owner")
            .order_by("-created_at", "-id")
        )
        sources = list(recent[:SOURCE_CHOICES])
        known = {str(source.code) for source in sources}
        missing = [code for code in chosen if code not in known]
        if missing:
            sources += list(_by_codes(recent, missing))
        choices = [("", "Choose a finished video")] + [
            (str(source.code), f"{source.display_title[:70]} ({source.owner.get_username()})")
            for source in sources
        ]
        for name in ("parent", "end_parent"):
            self.fields[name].widget.choices = choices

    def kept_frame(self, which: str) -> str:
        """The stored frame this form carries for `which` ("first" or "last"), if any."""
        name = self[f"{which}_frame_ref"].value() or ""
        return name if frames.NAME_RE.fullmatch(name) else ""

    @property
    def kept_first_frame(self) -> str:
        return self.kept_frame("first")

    @property
    def kept_last_frame(self) -> str:
        return self.kept_frame("last")

    # --- validation -----------------------------------------------------------------------

    def clean_aspect_ratio(self) -> str:
        return self.cleaned_data.get("aspect_ratio") or "16:9"

    def clean_mode(self) -> str:
        return self.cleaned_data.get("mode") or Mode.TEXT

    def _clean_upload(self, name: str) -> Any:
        upload = self.cleaned_data.get(name)
        if not upload:
            return None
        if not uploads_possible():
            raise forms.ValidationError(UPLOADS_NEED_SITE_URL)
        if upload.size > frames.MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The image is larger than {frames.MAX_UPLOAD_BYTES // (1024 * 1024)} MB."
            )
        try:
            self._jpegs[name] = frames.reencode(upload.read())
        except frames.FrameError as exc:
            raise forms.ValidationError(str(exc)) from None
        return upload

    def clean_first_frame(self) -> Any:
        return self._clean_upload("first_frame")

    def clean_last_frame(self) -> Any:
        return self._clean_upload("last_frame")

    def _clean_ref(self, name: str) -> str:
        value = self.cleaned_data.get(name) or ""
        return value if value and frames.exists(value) else ""

    def clean_first_frame_ref(self) -> str:
        return self._clean_ref("first_frame_ref")

    def clean_last_frame_ref(self) -> str:
        return self._clean_ref("last_frame_ref")

    def _clean_source(self, name: str) -> str:
        code = self.cleaned_data.get(name) or ""
        if not code:
            return ""
        source = None
        if self.user is not None:
            source = (
                _by_codes(Generation.objects.visible_to(self.user), [code])
                .select_related("owner")
                .first()
            )
        if source is None:
            raise forms.ValidationError("Choose a video from the list.")
        if source.state != "completed" or not source.upstream_id:
            raise forms.ValidationError("This video is not finished yet: wait until it is.")
        self._sources[name] = source
        return code

    def clean_parent(self) -> str:
        return self._clean_source("parent")

    def clean_end_parent(self) -> str:
        return self._clean_source("end_parent")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        mode = cleaned.get("mode") or Mode.TEXT
        if mode not in dict(available_modes()):
            self.add_error("mode", "This mode is not available with the configured Luma API.")
            return cleaned
        self._drop_unused(cleaned, mode)
        self._check_frames(cleaned, mode)
        if mode in PARENT_MODES and not cleaned.get("parent") and "parent" not in self.errors:
            self.add_error("parent", "Choose the video to start from.")
        if (
            mode in END_PARENT_MODES
            and not cleaned.get("end_parent")
            and "end_parent" not in self.errors
        ):
            self.add_error("end_parent", "Choose the video to end on.")
        if cleaned.get("loop") and mode in LOOP_REFUSED:
            self.add_error("loop", LOOP_REFUSED[mode])
        if not cleaned.get("prompt") and "prompt" not in self.errors:
            # Luma's own API needs no prompt when keyframes say what to show; a router needs
            # one, except to extend (it continues the parent's).
            optional = mode != Mode.TEXT and (
                settings.LUMA_API_DIALECT == "official" or mode == Mode.EXTEND
            )
            if not optional:
                self.add_error("prompt", "Describe the video you want.")
        # Ray 1.6 takes neither a duration nor a resolution: drop them rather than send them.
        if cleaned.get("model_name") == "ray-v1":
            cleaned["duration"] = ""
            cleaned["resolution"] = ""
        return cleaned

    def _drop_unused(self, cleaned: dict[str, Any], mode: str) -> None:
        """Fields of another mode may still hold values (the page only hid them)."""
        if mode not in FIRST_IMAGE_MODES:
            cleaned.update(first_frame=None, image_url="", first_frame_ref="")
            self._jpegs.pop("first_frame", None)
        if mode not in LAST_IMAGE_MODES:
            cleaned.update(last_frame=None, image_end_url="", last_frame_ref="")
            self._jpegs.pop("last_frame", None)
        if mode not in PARENT_MODES:
            cleaned["parent"] = ""
            self._sources.pop("parent", None)
        if mode not in END_PARENT_MODES:
            cleaned["end_parent"] = ""
            self._sources.pop("end_parent", None)
        for name in ("first_frame", "last_frame", "parent", "end_parent"):
            if not cleaned.get(name) and name in self.errors:
                # An error on a field this mode does not use is no error.
                unused = (
                    (name == "first_frame" and mode not in FIRST_IMAGE_MODES)
                    or (name == "last_frame" and mode not in LAST_IMAGE_MODES)
                    or (name == "parent" and mode not in PARENT_MODES)
                    or (name == "end_parent" and mode not in END_PARENT_MODES)
                )
                if unused:
                    del self.errors[name]

    def _check_frames(self, cleaned: dict[str, Any], mode: str) -> None:
        for which, url_field, modes in (
            ("first", "image_url", FIRST_IMAGE_MODES),
            ("last", "image_end_url", LAST_IMAGE_MODES),
        ):
            if mode not in modes:
                continue
            upload, url = f"{which}_frame", url_field
            if upload in self.errors or url in self.errors:
                continue
            if cleaned.get(upload) and cleaned.get(url):
                self.add_error(url, f"Give the {which} frame as a file or as a URL, not both.")
            elif cleaned.get(upload) or cleaned.get(url):
                cleaned[f"{which}_frame_ref"] = ""  # a new image replaces a kept one
            elif cleaned.get(f"{which}_frame_ref"):
                if not uploads_possible():
                    self.add_error(upload, UPLOADS_NEED_SITE_URL)
            else:
                self.add_error(upload, f"Give the {which} frame: upload an image or paste its URL.")

    # --- saving ---------------------------------------------------------------------------

    def save(self, commit: bool = True) -> Generation:
        generation = self.instance
        cleaned = self.cleaned_data
        generation.mode = cleaned["mode"]
        generation.image_url = cleaned.get("image_url") or ""
        generation.image_end_url = cleaned.get("image_end_url") or ""
        for which in ("first", "last"):
            field = f"{which}_frame"
            if field in self._jpegs:
                setattr(generation, field, frames.store(self._jpegs[field]))
            elif cleaned.get(f"{field}_ref"):
                setattr(generation, field, f"frames/{cleaned[f'{field}_ref']}")
        generation.parent = self._sources.get("parent")
        generation.end_parent = self._sources.get("end_parent")
        return super().save(commit=commit)


def _by_codes(queryset: GenerationQuerySet, codes: list[str]) -> GenerationQuerySet:
    valid = []
    for code in codes:
        try:
            valid.append(str(Generation._meta.get_field("code").to_python(code)))
        except forms.ValidationError:
            continue
    return queryset.filter(code__in=valid)


class RenameForm(forms.Form):
    title = forms.CharField(
        label="Title",
        max_length=200,
        required=False,
        strip=True,
        error_messages={"max_length": "Keep the title under 200 characters."},
    )


STATE_FILTERS = [
    ("", "Any state"),
    ("working", "In progress"),
    ("completed", "Completed"),
    ("failed", "Failed"),
]
SHOW_FILTERS = [("", "Everyone"), ("mine", "Mine"), ("starred", "Starred")]
ORDERS = [("", "Newest first"), ("oldest", "Oldest first")]


class GalleryFilterForm(forms.Form):
    """The gallery's filters, read from the URL. A value that does not fit is ignored."""

    show = forms.ChoiceField(
        label="Show", choices=SHOW_FILTERS, required=False, widget=forms.RadioSelect
    )
    q = forms.CharField(
        label="Search prompts and titles",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Search"}),
    )
    state = forms.ChoiceField(label="Filter by state", choices=STATE_FILTERS, required=False)
    model = forms.ChoiceField(
        label="Filter by model", choices=[("", "Any model"), *MODEL_CHOICES], required=False
    )
    # A username; the list of people is only read when the page shows the select.
    owner = forms.CharField(
        label="Filter by owner", required=False, max_length=150, widget=forms.Select
    )
    order = forms.ChoiceField(label="Sort", choices=ORDERS, required=False)

    NAMES = ("show", "q", "state", "model", "owner", "order")

    def __init__(self, data=None, *, with_people: bool = False) -> None:
        super().__init__(data or {})
        if with_people:
            people = (
                get_user_model()
                .objects.filter(is_active=True)
                .order_by("username")
                .values_list("username", flat=True)
            )
            self.fields["owner"].widget.choices = [("", "Anyone")] + [(p, p) for p in people]
        self.is_valid()

    def value(self, name: str) -> str:
        if name in self.errors:
            return ""
        return self.cleaned_data.get(name) or ""

    @property
    def scope(self) -> str:
        return self.value("show")

    @property
    def oldest_first(self) -> bool:
        return self.value("order") == "oldest"

    @property
    def active(self) -> bool:
        return any(self.value(name) for name in self.NAMES if name != "order")

    def apply(self, queryset: GenerationQuerySet, user) -> GenerationQuerySet:
        show = self.value("show")
        if show == "mine":
            queryset = queryset.mine(user)
        elif show == "starred":
            queryset = queryset.starred_by(user)
        return (
            queryset.with_state(self.value("state"))
            .with_model(self.value("model"))
            .owned_by(self.value("owner"))
            .search(self.value("q"))
            .ordered(self.oldest_first)
        )

    def querystring(self) -> str:
        from urllib.parse import urlencode

        return urlencode([(name, self.value(name)) for name in self.NAMES if self.value(name)])
