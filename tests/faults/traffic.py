"""Traffic for the fault suite: senders posting pings, a CSM editing, every answer recorded.

A sender behaves as a careful forwarder does: a 503 (or a refused connection, while gunicorn
restarts) is retried after ``Retry-After``; any other answer is final. So after a fault every
ping the test meant to send has been acknowledged exactly once by a 2xx, and the database must
hold exactly those.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import requests

from usage_portal.sampledata.payloads import build_payload

RETRYABLE = {502, 503, 504}


@dataclass
class Answers:
    """Every answer the clients got: statuses, content types of 5xx, latencies."""

    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    without_retry_after: int = 0
    connection_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, response: requests.Response | None, seconds: float, *, json: bool) -> None:
        """``json``: a machine's request, whose 503 must be JSON (a person's is the page)."""
        with self.lock:
            self.latencies.append(seconds)
            if response is None:
                self.connection_errors += 1
                return
            self.statuses[response.status_code] += 1
            if response.status_code >= 500:
                content_type = response.headers.get("Content-Type", "")
                promised = response.status_code == 503 and (
                    content_type == "application/json" or not json
                )
                self.server_errors.append(
                    f"{'503 as promised' if promised else response.status_code} {content_type} "
                    f"{response.request.method} {response.url} {response.text[:200]!r}"
                )
                if response.status_code == 503 and "Retry-After" not in response.headers:
                    self.without_retry_after += 1

    def p95(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(0.95 * (len(ordered) - 1))] if ordered else 0.0

    @property
    def unexpected_5xx(self) -> list[str]:
        """5xx other than the outage's 503 (JSON for a machine, the page for a person)."""
        return [e for e in self.server_errors if not e.startswith("503 as promised")]


def ping_body(account: dict, week: int, *, full_size: bool = False, now=None) -> bytes:
    """Week ``week`` back from now for this account: a unique (uuid, recorded_at)."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    recorded = now - timedelta(days=7 * week, minutes=5)
    body = build_payload(
        uuid=account["uuid"],
        hostname=account["hostname"],
        version="16.5.1-ee",
        recorded_at=recorded,
        license_md5=None,
        license_sha256=None,
        license_subscription_id=account["subscription"],
        licensed_users=200,
        licensee_company="Fault Suite",
        starts_at=None,
        expires_at=None,
        metrics={"billable_users": 40 + (week * 7 + len(account["uuid"])) % 60, "umau": 30},
        full_size=full_size,
    )
    return orjson.dumps(body)


def key_of(body: bytes) -> str:
    """The (uuid, recorded_at) the verifier reports a stored ping under."""
    data = orjson.loads(body)
    recorded = datetime.fromisoformat(data["recorded_at"].replace("Z", "+00:00"))
    return f"{data['uuid']}|{recorded.astimezone(UTC).isoformat()}"


def post_until_acknowledged(
    session: requests.Session, url: str, token: str, body: bytes, answers: Answers
) -> int:
    """Post one ping, retrying outages, until an answer that is final; returns its status."""
    deadline = time.monotonic() + 180
    while True:
        started = time.monotonic()
        try:
            response = session.post(
                url,
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=30,
            )
        except requests.ConnectionError:
            answers.record(None, time.monotonic() - started, json=True)
            response = None
        else:
            answers.record(response, time.monotonic() - started, json=True)
        if response is not None and response.status_code not in RETRYABLE:
            return response.status_code
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}: no final answer within 180 s")
        wait = 0.5
        if response is not None and response.headers.get("Retry-After", "").isdigit():
            wait = min(1.0, int(response.headers["Retry-After"]))
        time.sleep(wait)


def send_all(
    base_url: str,
    token: str,
    bodies: list,
    *,
    clients: int,
    answers: Answers,
) -> dict[str, int]:
    """Send every body (bytes, or a function returning them) from ``clients`` threads; returns
    key → final status."""
    finals: dict[str, int] = {}
    lock = threading.Lock()
    queue = list(enumerate(bodies))
    queue.reverse()

    def run() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                _, body = queue.pop()
            if callable(body):  # built on demand (the load test's full-size bodies)
                body = body()
            status = post_until_acknowledged(
                session, f"{base_url}/usage_data", token, body, answers
            )
            with lock:
                finals[key_of(body)] = status

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return finals


class Background:
    """Run ``send_all`` in a thread while the test injects a fault."""

    def __init__(self, *args, **kwargs):
        self.result: dict[str, int] | None = None
        self.error: BaseException | None = None

        def target():
            try:
                self.result = send_all(*args, **kwargs)
            except BaseException as exc:  # reported by join()
                self.error = exc

        self.thread = threading.Thread(target=target)
        self.thread.start()

    def join(self) -> dict[str, int]:
        self.thread.join()
        if self.error:
            raise self.error
        assert self.result is not None
        return self.result


CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Csm:
    """A CSM in a browser session: signs in, edits, retries an outage like a person would."""

    def __init__(self, base_url: str, username: str, password: str, answers: Answers):
        self.base_url, self.answers = base_url, answers
        self.session = requests.Session()
        self._retry(lambda: self._login(username, password))

    def _csrf(self, path: str) -> str:
        response = self.session.get(self.base_url + path, timeout=30)
        response.raise_for_status()
        return CSRF.search(response.text).group(1)

    def _login(self, username: str, password: str) -> requests.Response:
        token = self._csrf("/login/")
        return self.session.post(
            self.base_url + "/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": self.base_url + "/login/"},
            allow_redirects=False,
            timeout=30,
        )

    def _retry(self, attempt) -> requests.Response:
        deadline = time.monotonic() + 180
        while True:
            started = time.monotonic()
            try:
                response = attempt()
            except (requests.ConnectionError, requests.HTTPError, AttributeError):
                # The form page itself failed (an outage): try the whole edit again.
                self.answers.record(None, time.monotonic() - started, json=False)
                response = None
            else:
                self.answers.record(response, time.monotonic() - started, json=False)
            if response is not None and response.status_code not in RETRYABLE:
                return response
            if time.monotonic() > deadline:
                raise AssertionError("an edit got no final answer within 180 s")
            time.sleep(0.5)

    def set_sentiment(self, company_id: int, note: str) -> int:
        path = f"/accounts/{company_id}/sentiment/"

        def attempt():
            token = self._csrf(f"/accounts/{company_id}/")
            return self.session.post(
                self.base_url + path,
                data={"sentiment": "Green", "note": note, "csrfmiddlewaretoken": token},
                headers={"Referer": self.base_url + path},
                allow_redirects=False,
                timeout=30,
            )

        return self._retry(attempt).status_code

    def relabel(self, company_id: int, instance_id: int, instance_type: str) -> int:
        path = f"/accounts/{company_id}/instances/{instance_id}/edit/"

        def attempt():
            token = self._csrf(path)
            return self.session.post(
                self.base_url + path,
                data={
                    "instance_type": instance_type,
                    "health_inclusion": "",
                    "csrfmiddlewaretoken": token,
                },
                headers={"Referer": self.base_url + path},
                allow_redirects=False,
                timeout=30,
            )

        return self._retry(attempt).status_code
