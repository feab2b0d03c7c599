"""factory-boy factories for the domain models."""

import datetime as dt

import factory
from django.utils import timezone

from accounts.models import Company, Subscription
from instances.models import Instance, License


class CompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Company

    name = factory.Sequence(lambda n: f"Company {n}")
    crm_account_id = factory.Sequence(lambda n: f"0019000000{n:06d}")
    segment = "Strategic"
    customer_since = factory.LazyFunction(lambda: timezone.now().date() - dt.timedelta(days=400))


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    name = factory.Sequence(lambda n: f"A-S{20000000 + n:08d}")
    company = factory.SubFactory(CompanyFactory)
    plan = "ultimate"
    licensed_seats = 100
    deployment = "self-managed"
    status = "active"


class LicenseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = License

    md5 = factory.Sequence(lambda n: f"{n:032x}")


class InstanceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Instance

    kind = "self-managed"
    uuid = factory.Sequence(lambda n: f"00000000-0000-0000-0000-{n:012d}")
    hostname = factory.Sequence(lambda n: f"gitlab{n}.example.com")
    subscription = factory.SubFactory(SubscriptionFactory)
    company = factory.SelfAttribute("subscription.company")
    instance_type = "production"


def store_ping(
    instance_or_uuid,
    *,
    recorded_at=None,
    days_ago=None,
    metrics=None,
    subscription=None,
    version="16.5.1-ee",
    hostname=None,
    license_md5=None,
    refresh=True,
):
    """Store one real-format ping through the ingest path; returns the UsagePing.

    It is recorded at ``recorded_at``, or ``days_ago`` days before now: give exactly one.
    """
    if (recorded_at is None) == (days_ago is None):
        raise TypeError("store_ping needs exactly one of recorded_at and days_ago")
    if days_ago is not None:
        recorded_at = timezone.now() - dt.timedelta(days=days_ago)
    import orjson

    from instances.models import UsagePing
    from instances.parsing import parse_ping
    from instances.services.inputs import PingInput
    from instances.services.store import pings_store
    from usage_portal.sampledata.payloads import build_payload

    if isinstance(instance_or_uuid, Instance):
        uuid, hostname = instance_or_uuid.uuid, instance_or_uuid.hostname
        subscription = subscription or instance_or_uuid.subscription
    else:
        uuid, hostname = instance_or_uuid, hostname or "gitlab.example.com"
    seats = subscription.licensed_seats if subscription else 100
    values = {"billable_users": 40, "umau": 30, "git_operation_users": 20} | (metrics or {})
    payload = build_payload(
        uuid=uuid,
        hostname=hostname,
        version=version,
        recorded_at=recorded_at,
        license_md5=license_md5,
        license_sha256=None,
        license_subscription_id=subscription.name if subscription else None,
        license_plan=subscription.plan if subscription else "ultimate",
        licensed_users=seats,
        licensee_company="Test",
        starts_at=None,
        expires_at=None,
        metrics=values,
    )
    raw = orjson.dumps(payload)
    summary = pings_store(
        inputs=[PingInput.from_parsed(parse_ping(orjson.loads(raw)), raw=raw)],
        source="http",
        refresh=refresh,
    )
    return UsagePing.objects.get(pk=summary.outcomes[0].ping_id)


def refused(create) -> bool:
    """Whether the database refuses what ``create`` writes (an integrity constraint)."""
    from django.db import IntegrityError, transaction

    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False
