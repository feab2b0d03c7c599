from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.conf import settings

from .models import PingSource
from .parsing import PayloadError, PingRejected, decode_body, parse_ping
from .services import PingInput, pings_store, rejected_payload_keep


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else single(data, initial)


@dataclass
class UploadResult:
    filename: str
    ok: bool
    message: str
    ping_id: int | None = None


class PingUploadForm(forms.Form):
    files = MultipleFileField(
        label="Service Ping payload files",
        help_text="One or more .json or .json.gz files downloaded from Admin → Metrics and "
        "profiling → Download payload.",
        widget=MultipleFileInput(attrs={"accept": ".json,.gz,application/json,application/gzip"}),
    )

    MAX_FILES = 100

    def clean_files(self):
        files = self.cleaned_data["files"]
        if len(files) > self.MAX_FILES:
            raise forms.ValidationError(f"Upload at most {self.MAX_FILES} files at a time.")
        return files

    def ingest(self) -> list[UploadResult]:
        """Store each file on its own; a bad file is reported and kept, the others go on."""
        results = []
        for upload in self.cleaned_data["files"]:
            results.append(_ingest_one(upload))
        return results


def _ingest_one(upload) -> UploadResult:
    name = upload.name
    if upload.size > settings.PING_MAX_BODY_BYTES:
        reason = f"file of {upload.size} bytes exceeds the limit of {settings.PING_MAX_BODY_BYTES}"
        rejected_payload_keep(source=PingSource.UPLOAD, reason=reason, raw=None, filename=name)
        return UploadResult(name, False, reason)
    raw = upload.read()
    try:
        payload = decode_body(
            raw, content_encoding=None, max_bytes=settings.PING_MAX_DECOMPRESSED_BYTES
        )
        parsed = parse_ping(payload)
    except (PayloadError, PingRejected) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        rejected_payload_keep(source=PingSource.UPLOAD, reason=reason, raw=raw, filename=name)
        return UploadResult(name, False, f"rejected: {reason}")
    summary = pings_store(
        inputs=[PingInput.from_parsed(parsed, raw=raw, label=name)], source=PingSource.UPLOAD
    )
    outcome = summary.outcomes[0]
    if outcome.status == "duplicate":
        return UploadResult(name, True, "already stored (duplicate)", outcome.ping_id)
    when = parsed.recorded_at.strftime("%Y-%m-%d %H:%M UTC")
    text = f"stored: {parsed.hostname or parsed.uuid}, version {parsed.version or '?'}, {when}"
    if outcome.unmapped:
        text += " — license maps to no subscription yet (kept, shown under Data quality)"
    return UploadResult(name, True, text, outcome.ping_id)
