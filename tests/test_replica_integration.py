"""The read replica against a real PostgreSQL streaming replica (usage_portal.dbrouting).

The test builds its own primary (``initdb``) and hot standby (``pg_basebackup -R -X stream``) on
free ports, migrates the primary, and runs the Procfile's web process (gunicorn) with
``DATABASE_URL`` on the primary and ``DATABASE_REPLICA_URL`` on the standby. Which database a
page read from is seen, not assumed: WAL replay on the standby is paused
(``pg_wal_replay_pause``), a row is changed on the primary only, and the page shows the old value
(the replica) or the new one (the primary). The shared PostgreSQL on 5432 is never touched.

The page is the person's profile: it reads their chosen time zone from the database on every
GET (``UserPreferences.time_zone_of``) and shows it in ``data-testid="reader-zone"``, and its
form is the simplest write a person makes.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import requests

from tests.faults.stack import OwnPostgres, _pg_bin, procfile, wait_port
from tests.redis_support import free_port
from usage_portal.dbrouting import COOKIE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
STICKY_SECONDS = 3
PASSWORD = "replica-test-" + secrets.token_urlsafe(12)
ZONE = re.compile(r'data-testid="reader-zone">([^<\s]+)')


class OwnStandby(OwnPostgres):
    """A hot standby of ``primary``: its base backup, streaming and replaying its WAL."""

    def __init__(self, folder: Path, primary: OwnPostgres):
        super().__init__(folder)
        self.primary = primary

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        # -R writes standby.signal and primary_conninfo: the copy starts as a streaming standby.
        self._run(
            _pg_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port),
            "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self.start()


def sql(url: str, query: str, *params):
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchone() if cursor.description else cursor.rowcount


def wait_for(what: str, check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:.0f} s")
        time.sleep(0.1)


class Replication:
    def __init__(self, primary: OwnPostgres, standby: OwnStandby):
        self.primary, self.standby = primary, standby
        self.marks = 0

    def pause(self) -> None:
        sql(self.standby.url, "SELECT pg_wal_replay_pause()")
        state = "SELECT pg_get_wal_replay_pause_state()"
        wait_for("replay did not pause", lambda: sql(self.standby.url, state)[0] == "paused")

    def resume_and_catch_up(self) -> None:
        sql(self.standby.url, "SELECT pg_wal_replay_resume()")
        self.catch_up()

    def catch_up(self) -> None:
        """Until the standby has replayed every commit the primary made so far.

        Seen in the data, not by WAL positions: the primary commits asynchronously
        (synchronous_commit=off), so its WAL position can run ahead of what it has sent.
        """
        self.marks += 1
        sql(self.primary.url, "INSERT INTO replication_mark VALUES (%s)", self.marks)
        wait_for(
            "the standby did not replay the primary's commits",
            lambda: sql(self.standby.url, "SELECT max(n) FROM replication_mark")[0] == self.marks,
        )

    def zone_on_primary(self, username: str, zone: str) -> None:
        """A change the portal did not make, on the primary only while replay is paused."""
        changed = sql(
            self.primary.url,
            "UPDATE accounts_userpreferences SET time_zone = %s"
            " WHERE user_id = (SELECT id FROM auth_user WHERE username = %s)",
            zone,
            username,
        )
        assert changed == 1


class Portal:
    """The Procfile's web process, one gunicorn worker, on the two databases."""

    def __init__(self, folder: Path, primary: OwnPostgres, standby: OwnStandby):
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = folder / "web.log"
        self.env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "usage_portal.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_COOKIES": "0",
            "STATIC_MANIFEST": "0",
            "VAR_DIR": str(folder / "var"),
            "DATABASE_URL": primary.url,
            "DATABASE_REPLICA_URL": standby.url,
            "REPLICA_STICKY_SECONDS": str(STICKY_SECONDS),
            "REPLICA_RETRY_SECONDS": "1",
            "BIND": "127.0.0.1",
            "PORT": str(self.port),
            # One process: the "replica is down" verdict is per process, and this one is seen.
            "WEB_CONCURRENCY": "1",
            "PYTHONUNBUFFERED": "1",
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stderr[-3000:]}"

    def start(self) -> None:
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            ["bash", "-c", "exec " + procfile()["web"]],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_port(self.port, 30, "gunicorn")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGQUIT)  # gunicorn: quick shutdown
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture(scope="module")
def world():
    base = Path(tempfile.mkdtemp(prefix="usage-portal-replica-"))
    primary = OwnPostgres(base / "primary")
    standby = OwnStandby(base / "standby", primary)
    portal = Portal(base, primary, standby)
    try:
        primary.init()
        level = sql(primary.url, "SHOW wal_level")[0]
        assert level in ("replica", "logical"), f"the primary's wal_level is {level}"
        # initdb --auth=trust allows replication from 127.0.0.1 already; said here, not assumed.
        hba = Path(sql(primary.url, "SHOW hba_file")[0])
        with hba.open("a") as lines:
            lines.write("\nhost replication postgres 127.0.0.1/32 trust\n")
        sql(primary.url, "SELECT pg_reload_conf()")
        sql(primary.url, "CREATE TABLE replication_mark (n integer)")
        standby.init()
        (base / "var").mkdir()
        portal.manage("migrate", "--noinput")
        portal.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user('reader', password={PASSWORD!r})",
        )
        replication = Replication(primary, standby)
        replication.catch_up()
        portal.start()
        yield SimpleWorld(portal, replication, standby)
    finally:
        portal.stop()
        standby.remove()
        primary.remove()
        shutil.rmtree(base, ignore_errors=True)


class SimpleWorld:
    def __init__(self, portal: Portal, replication: Replication, standby: OwnStandby):
        self.portal, self.replication, self.standby = portal, replication, standby

    def signed_in(self) -> requests.Session:
        browser = requests.Session()
        browser.get(f"{self.portal.url}/login/", timeout=10).raise_for_status()
        response = browser.post(
            f"{self.portal.url}/login/",
            data={
                "username": "reader",
                "password": PASSWORD,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, self.portal.log_tail()
        return browser

    def zone_shown(self, browser: requests.Session) -> str:
        response = browser.get(f"{self.portal.url}/profile/", allow_redirects=False, timeout=10)
        assert response.status_code == 200, f"{response.status_code}\n{self.portal.log_tail()}"
        return ZONE.search(response.text).group(1)

    def choose_zone(self, browser: requests.Session, zone: str) -> str:
        """The profile form, as a person sends it; the zone the page after it shows."""
        response = browser.post(
            f"{self.portal.url}/profile/",
            data={"time_zone": zone, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            timeout=10,
        )
        assert response.status_code == 200, self.portal.log_tail()
        assert response.history and response.history[0].status_code == 302
        assert COOKIE in response.history[0].cookies, "the write did not make the person sticky"
        return ZONE.search(response.text).group(1)


def without_sticky_cookie(browser: requests.Session) -> requests.Session:
    """The same person in a browser that has no sticky cookie (or whose window ended)."""
    other = requests.Session()
    for cookie in browser.cookies:
        if cookie.name != COOKIE:
            other.cookies.set_cookie(cookie)
    return other


def test_pages_read_the_replica_own_writes_the_primary_and_a_dead_replica_is_no_error(world):
    replication = world.replication
    person = world.signed_in()
    assert world.choose_zone(person, "Europe/Paris") == "Europe/Paris"
    replication.catch_up()
    reader = without_sticky_cookie(person)

    # (a) A page reads from the replica: a change on the primary is not seen until replayed.
    replication.pause()
    replication.zone_on_primary("reader", "Asia/Tokyo")
    assert world.zone_shown(reader) == "Europe/Paris", "the page did not read from the replica"
    replication.resume_and_catch_up()
    assert world.zone_shown(reader) == "Asia/Tokyo"

    # (b) The person's own write shows on the page after it although the replica lags ...
    replication.pause()
    assert world.choose_zone(person, "America/Chicago") == "America/Chicago"
    assert world.zone_shown(person) == "America/Chicago"
    # ... because the person reads from the primary: without the cookie the replica is stale,
    assert world.zone_shown(without_sticky_cookie(person)) == "Asia/Tokyo"
    # and once the window has passed the person reads from the replica again.
    time.sleep(STICKY_SECONDS + 1.1)
    assert world.zone_shown(person) == "Asia/Tokyo"
    replication.resume_and_catch_up()
    assert world.zone_shown(reader) == "America/Chicago"

    # (c) The standby stops: pages still answer, from the primary, at once.
    replication.pause()
    replication.zone_on_primary("reader", "Australia/Sydney")
    world.standby.stop("fast")
    started = time.monotonic()
    assert world.zone_shown(reader) == "Australia/Sydney"
    fallback_seconds = time.monotonic() - started
    assert fallback_seconds < 3.0, f"the fallback took {fallback_seconds:.2f} s"
    dashboard = reader.get(f"{world.portal.url}/", timeout=10)
    assert dashboard.status_code == 200
    assert "read replica unreachable" in world.portal.log_tail()

    # (d) The standby is back: after REPLICA_RETRY_SECONDS pages read from it again.
    world.standby.start()
    replication.catch_up()
    time.sleep(1.1)
    replication.pause()
    replication.zone_on_primary("reader", "Africa/Cairo")
    assert wait_for(
        "pages did not go back to the replica",
        lambda: world.zone_shown(reader) == "Australia/Sydney",
        timeout=5,
    )
    print(f"\nreplica: the first page with the standby stopped took {fallback_seconds:.3f} s")
