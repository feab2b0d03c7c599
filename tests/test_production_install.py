"""The production install: `pip install -c constraints.txt .`, then the checkout runs as is.

Before: `pip install .` brought honcho along with the application's dependencies, nothing pinned
the versions the suite ran against, gunicorn was a year old and never recycled its workers,
and no version was shown anywhere. The slow half (marked ``integration``) installs into a fresh
virtualenv from a copy of the checkout and runs what the README says: `check --deploy` is
clean, migrate, collectstatic, the Procfile's gunicorn answers and its worker starts.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
from django.test import Client
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import PASSWORD
from usage_portal.version import portal_version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
#: What a production host must not get from `pip install .`.
DEV_TOOLS = {"pytest", "pytest-django", "factory-boy", "playwright", "ruff", "hypothesis", "honcho"}


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[A-Za-z0-9._-]+", name) and version, line
        pins[canonicalize_name(name)] = version
    return pins


def _procfile(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise AssertionError(f"no {name!r} line in the Procfile")


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {
        **{
            key: value for key, value in os.environ.items() if key in keep or key.startswith("PIP_")
        },
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,portal.example.com",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_HSTS_PRELOAD": "1",
        "VAR_DIR": str(tmp_path / "var"),
        **extra,
    }


# --------------------------------------------------------------------------------------------------
# What `pip install .` asks for


def test_the_application_requires_no_development_tool():
    assert not _names(PROJECT["dependencies"]) & DEV_TOOLS
    extras = PROJECT["optional-dependencies"]
    assert _names(extras["demo"]) == {"honcho"}
    # `make install` (`.[dev]`) still brings everything `make demo` and `make test` run.
    assert "usage-portal[demo]" in extras["dev"]
    assert DEV_TOOLS - {"honcho"} <= _names(extras["dev"])


def test_the_installed_version_is_the_pyprojects():
    """What /healthz and the footer show (stale after a version bump: run `make install`)."""
    assert metadata.version("usage-portal") == PROJECT["version"]


def test_constraints_pin_every_requirement_within_its_range():
    pins = _constraints()
    requirements = [
        Requirement(r)
        for r in PROJECT["dependencies"]
        + [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    ]
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name == "usage-portal":
            continue  # the extras naming each other
        assert name in pins, f"{name} is not in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside {requirement.specifier}"
        )
    assert "usage-portal" not in pins


def test_the_license_file_is_the_declared_license():
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 Usage Portal contributors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_the_changelog_describes_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, re.MULTILINE)
    assert headings[0] == PROJECT["version"]
    assert "0.1.0" in headings


@pytest.mark.django_db
def test_every_page_and_healthz_show_the_version(viewer):
    client = Client()
    client.login(username=viewer.username, password=PASSWORD)

    page = client.get("/").content.decode()

    assert portal_version() == PROJECT["version"]
    assert re.search(rf"<footer[^>]*>.*Usage Portal {re.escape(PROJECT['version'])}<", page)
    assert Client().get("/healthz").json()["version"] == PROJECT["version"]


# --------------------------------------------------------------------------------------------------
# The Procfile's gunicorn


def test_the_procfile_recycles_gunicorn_workers_and_binds_from_the_environment():
    web = _procfile("web")
    assert "--bind ${BIND:-127.0.0.1}:${PORT:-8000}" in web
    assert "--max-requests ${GUNICORN_MAX_REQUESTS:-10000}" in web
    assert "--max-requests-jitter ${GUNICORN_MAX_REQUESTS_JITTER:-1000}" in web
    # gunicorn 26+ opens a control socket at ~/.gunicorn/gunicorn.ctl, shared by every gunicorn
    # of the user (the suite's, the bench's): the portal does not use it.
    assert "--no-control-socket" in web


def test_the_installed_gunicorn_accepts_the_procfile_line(tmp_path):
    """Every option of the line exists in the pinned gunicorn, and the app loads under it."""
    env = _production_env(tmp_path, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", "-c", f"exec {_procfile('web')} --check-config"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert metadata.version("gunicorn").split(".")[0] == _constraints()["gunicorn"].split(".")[0]


# --------------------------------------------------------------------------------------------------
# A fresh virtualenv, as the README installs it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _checkout_copy(target: Path) -> Path:
    """The working tree without what a checkout does not have (pip builds in the tree)."""
    ignored = shutil.ignore_patterns(
        ".git", ".venv", "var", "__pycache__", ".*_cache", ".hypothesis", "*.egg-info", "build"
    )
    shutil.copytree(ROOT, target, ignore=ignored)
    shutil.rmtree(target / "bench" / "data", ignore_errors=True)  # make bench's generated book
    return target


def _run(args: list[str], *, cwd: Path, env: dict, timeout: int = 300) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(args)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


def _get(url: str, **headers: str):
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        return response.status, dict(response.headers), response.read()


def _wait_for(url: str, process: subprocess.Popen, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "gunicorn exited"
        try:
            return _get(url)
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {seconds} s")


@pytest.mark.integration
def test_a_fresh_virtualenv_runs_the_checkout_in_production(tmp_path):
    checkout = _checkout_copy(tmp_path / "checkout")
    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    env = _production_env(tmp_path, PATH=f"{bin_dir}:{os.environ['PATH']}")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env)
    pip = str(bin_dir / "pip")
    _run([pip, "install", "-q", "-c", "constraints.txt", "."], cwd=checkout, env=env, timeout=600)

    installed = {
        canonicalize_name(line.partition("==")[0])
        for line in _run([pip, "freeze"], cwd=checkout, env=env).splitlines()
    }
    assert {"django", "gunicorn", "celery", "django-csp", "plotly"} <= installed
    assert not installed & DEV_TOOLS
    python = str(bin_dir / "python")
    deploy = ["check", "--deploy", "--fail-level", "WARNING"]
    check = _run([python, "manage.py", *deploy], cwd=checkout, env=env)
    assert "System check identified no issues" in check
    _run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=checkout, env=env)
    _run([python, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=checkout, env=env)
    static = tmp_path / "var" / "staticfiles" / "vendor" / "plotly"
    hashed = [p.name for p in static.glob("plotly.min.*.js")]
    assert len(hashed) == 1 and not (static / "widgetbundle.js").exists()

    # The Procfile's web line, as a process manager would run it from the checkout.
    port = _free_port()
    web_env = {**env, "BIND": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1"}
    web = subprocess.Popen(
        ["bash", "-c", f"exec {_procfile('web')}"], cwd=checkout, env=web_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        status, _, body = _wait_for(f"http://127.0.0.1:{port}/healthz", web)
        assert status == 200 and f'"version": "{PROJECT["version"]}"' in body.decode()
        https = {"X-Forwarded-Proto": "https"}
        status, headers, _ = _get(f"http://127.0.0.1:{port}/login/", **https)
        assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
        status, _, script = _get(
            f"http://127.0.0.1:{port}/static/vendor/plotly/{hashed[0]}", **https
        )
        assert status == 200 and script.startswith(b"/**\n* plotly.js")
    finally:
        web.terminate()
        web.wait(timeout=30)

    # The worker starts (the filesystem broker: no Redis needed to boot).
    worker = subprocess.Popen(
        [str(bin_dir / "celery"), "-A", "usage_portal", "worker", "--pool", "solo",
         "--queues", "ingest,scoring", "--loglevel", "INFO"],
        cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline and worker.poll() is None:
            lines.append(worker.stdout.readline())
            if " ready." in lines[-1]:
                break
        assert any(" ready." in line for line in lines), "".join(lines[-40:])
    finally:
        worker.terminate()
        worker.wait(timeout=30)
