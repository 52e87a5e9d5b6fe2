from __future__ import annotations

from django import forms

from generations.models import Generation

PROMPT_MIN, PROMPT_MAX = 3, 5000


class GenerateForm(forms.ModelForm):
    prompt = forms.CharField(
        label="Prompt",
        min_length=PROMPT_MIN,
        max_length=PROMPT_MAX,
        strip=True,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "A drone shot over a tropical island at dawn"}
        ),
        error_messages={
            "required": "Describe the video you want.",
            "min_length": f"Write at least {PROMPT_MIN} characters.",
            "max_length": f"Keep the prompt under {PROMPT_MAX} characters.",
        },
    )

    class Meta:
        model = Generation
        fields = ["prompt", "model_name", "duration", "resolution", "expand_prompt"]
        labels = {
            "model_name": "Model",
            "duration": "Duration",
            "resolution": "Resolution",
            "expand_prompt": "Expand prompt",
        }
        help_texts = {"expand_prompt": "Let Luma enrich the prompt before dreaming."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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
        self.fields["duration"].initial = "5"
        self.fields["resolution"].initial = "720p"

    def clean(self):
        cleaned = super().clean()
        # Ray 1.6 takes neither a duration nor a resolution: drop them rather than send them.
        if cleaned.get("model_name") == "ray-v1":
            cleaned["duration"] = ""
            cleaned["resolution"] = ""
        return cleaned
