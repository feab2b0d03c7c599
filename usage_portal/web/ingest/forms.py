"""The manual upload form: several Service Ping payload files, validated here, stored by
``instances.services.files.ping_uploads_store`` (a result per file)."""

from __future__ import annotations

from django import forms


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None):
        """A list of uploaded files; none at all is the usual "required" error."""
        single = super().clean
        if isinstance(data, list | tuple):
            data = [item for item in data if item]
            if data:
                return [single(item, initial) for item in data]
            data = None
        return [single(data, initial)] if data else single(data, initial)


class PingUploadForm(forms.Form):
    files = MultipleFileField(
        label="Service Ping payload files",
        help_text="One or more .json or .json.gz files downloaded from Admin → Metrics and "
        "profiling → Download payload.",
        widget=MultipleFileInput(attrs={"accept": ".json,.gz,application/json,application/gzip"}),
        # An empty file is one bad file among several, reported on its own line, not a form error.
        allow_empty_file=True,
    )

    MAX_FILES = 100

    def clean_files(self):
        files = self.cleaned_data["files"]
        if len(files) > self.MAX_FILES:
            raise forms.ValidationError(f"Upload at most {self.MAX_FILES} files at a time.")
        return files
