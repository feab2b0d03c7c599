"""The manual upload form: several Service Ping payload files, a result per file."""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.db import DataError

from accounts.changes import companies_changed
from instances.models import PingSource
from instances.parsing import PayloadError, PingRejected, inflate_body, loads_json, parse_ping
from instances.services import (
    PingInput,
    pings_store,
    rejected_payload_keep,
)


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
        # An empty file is one bad file among several, reported on its own line, not a form error.
        allow_empty_file=True,
    )

    MAX_FILES = 100

    def clean_files(self):
        files = self.cleaned_data["files"]
        if len(files) > self.MAX_FILES:
            raise forms.ValidationError(f"Upload at most {self.MAX_FILES} files at a time.")
        return files

    def ingest(self) -> list[UploadResult]:
        """Store each file on its own; a bad file is reported and kept, the others go on.

        One score refresh is queued for every company the stored files touched.
        """
        results, company_ids = [], set()
        for upload in self.cleaned_data["files"]:
            result, companies = _ingest_one(upload)
            results.append(result)
            company_ids |= companies
        companies_changed(company_ids, reason="uploaded pings")
        return results


def _ingest_one(upload) -> tuple[UploadResult, set[int]]:
    name = upload.name
    limit = settings.PING_MAX_BODY_BYTES
    if upload.size > limit:
        reason = f"file of {upload.size} bytes exceeds the limit of {limit} bytes"
        rejected_payload_keep(source=PingSource.UPLOAD, reason=reason, raw=None, filename=name)
        return UploadResult(name, False, f"rejected: {reason}"), set()
    data = upload.read()
    try:
        text = inflate_body(
            data, content_encoding=None, max_bytes=settings.PING_MAX_DECOMPRESSED_BYTES
        )
        parsed = parse_ping(loads_json(text))
        raw = bytes(text)
        summary = pings_store(
            inputs=[PingInput.from_parsed(parsed, raw=raw, label=name)],
            source=PingSource.UPLOAD,
            refresh=False,
        )
    except (PayloadError, PingRejected) as exc:
        return _rejected(name, exc.reason, data), set()
    except DataError:
        return _rejected(name, "a value does not fit the database", data), set()
    outcome = summary.outcomes[0]
    if outcome.status == "duplicate":
        result = UploadResult(name, True, "already stored (duplicate)", outcome.ping_id)
        return result, set()
    when = parsed.recorded_at.strftime("%Y-%m-%d %H:%M UTC")
    detail = f"stored: {parsed.hostname or parsed.uuid}, version {parsed.version or '?'}, {when}"
    if outcome.unmapped:
        detail += " — license maps to no subscription yet (kept, shown under Data quality)"
    return UploadResult(name, True, detail, outcome.ping_id), summary.company_ids


def _rejected(name: str, reason: str, data: bytes) -> UploadResult:
    rejected_payload_keep(source=PingSource.UPLOAD, reason=reason, raw=data, filename=name)
    return UploadResult(name, False, f"rejected: {reason}")
