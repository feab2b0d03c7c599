"""``PingInput``: one ping ready to store, from a self-managed Service Ping or a SaaS export row.

Building one normalises what the ping store keys and filters on: text clipped to its column,
license hashes lower-cased, old tier names mapped to today's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from instances.models import InstanceKind
from instances.parsing import ParsedPing
from instances.services.storable import clip, compress_raw

#: GitLab renamed its tiers; pings from old licenses still carry the old names.
PLAN_ALIASES = {"gold": "ultimate", "silver": "premium", "bronze": "starter", "core": "free"}


def normalize_plan(plan: str | None) -> str:
    plan = (plan or "").strip().lower()
    return PLAN_ALIASES.get(plan, plan)


@dataclass(slots=True)
class PingInput:
    """One ping ready to store, from a self-managed Service Ping or a SaaS namespace export row.

    ``raw`` is the JSON as received; a caller that compressed it already (the bulk loader does so
    in worker threads) passes ``raw_compressed`` instead.
    """

    kind: str
    recorded_at: datetime
    metrics: dict
    uuid: str | None = None
    hostname: str = ""
    namespace_id: int | None = None
    namespace_path: str = ""
    version: str = ""
    version_tuple: tuple[int, int, int] | None = None
    edition: str = ""
    license_md5: str = ""
    license_sha256: str = ""
    license_subscription_id: str = ""
    license_plan: str = ""
    license_trial: bool | None = None
    raw: bytes | None = None
    raw_compressed: bytes | None = None
    label: str = ""  # file name or row number, for summaries
    failed: tuple[str, ...] = ()  # metrics reported as a failure value (ParsedPing.failed)

    @classmethod
    def from_parsed(
        cls,
        parsed: ParsedPing,
        *,
        raw: bytes | None = None,
        raw_compressed: bytes | None = None,
        label: str = "",
    ) -> PingInput:
        return cls(
            kind=InstanceKind.SELF_MANAGED,
            uuid=parsed.uuid,
            hostname=parsed.hostname,
            recorded_at=parsed.recorded_at,
            version=clip(parsed.version, 64),
            version_tuple=parsed.version_tuple,
            edition=clip(parsed.edition, 16),
            # Hashes are hex: case must not split one license into two rows.
            license_md5=clip(parsed.license_md5, 32).lower(),
            license_sha256=clip(parsed.license_sha256, 64).lower(),
            license_subscription_id=clip(parsed.license_subscription_id, 64),
            license_plan=clip(normalize_plan(parsed.license_plan), 32),
            license_trial=parsed.license_trial,
            metrics=parsed.metrics,
            failed=parsed.failed,
            raw=raw,
            raw_compressed=raw_compressed,
            label=label,
        )

    @classmethod
    def from_saas(cls, row, *, label: str = "") -> PingInput:
        return cls(
            kind=InstanceKind.SAAS,
            namespace_id=row.namespace_id,
            namespace_path=row.namespace_path,
            recorded_at=row.recorded_at,
            license_subscription_id=row.subscription_name,
            metrics=row.metrics,
            label=label or f"row {row.line}",
        )

    @property
    def identity(self) -> tuple:
        if self.kind == InstanceKind.SAAS:
            return (InstanceKind.SAAS, self.namespace_id)
        return (InstanceKind.SELF_MANAGED, self.uuid, self.hostname)

    def stored_raw(self) -> bytes | None:
        """The payload as its row keeps it: zlib-compressed (once, wherever that happened)."""
        if self.raw_compressed is not None:
            return self.raw_compressed
        return compress_raw(self.raw)
