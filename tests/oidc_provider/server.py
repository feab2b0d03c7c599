"""Start and stop the test identity provider (see the package doc) from a test."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Provider:
    url: str
    client_id: str
    client_secret: str
    process: subprocess.Popen
    log: Path

    @property
    def endpoints(self) -> dict[str, str]:
        """The portal's settings for this provider (as its discovery document lists them)."""
        return {
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.url}/o/authorize/",
            "OIDC_OP_TOKEN_ENDPOINT": f"{self.url}/o/token/",
            "OIDC_OP_USER_ENDPOINT": f"{self.url}/o/userinfo/",
            "OIDC_OP_JWKS_ENDPOINT": f"{self.url}/o/.well-known/jwks.json",
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_provider(folder: Path, *, redirect_uri: str, people: list[dict]) -> Provider:
    """Prepare the provider in ``folder`` and serve it on 127.0.0.1; ready when this returns."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (folder / "rsa.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "secret").write_text(secrets.token_urlsafe(50))
    client_id, client_secret = "usage-portal", secrets.token_urlsafe(32)
    spec = folder / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uri": redirect_uri,
                "people": people,
            }
        )
    )
    env = {
        **os.environ,
        "OP_DIR": str(folder),
        "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(
        [sys.executable, "-m", "tests.oidc_provider.prepare", str(spec)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "gunicorn.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--chdir",
            str(ROOT),
            "tests.oidc_provider.wsgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    provider = Provider(url, client_id, client_secret, process, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the test provider exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(provider.endpoints["OIDC_OP_JWKS_ENDPOINT"], timeout=2).ok:
                return provider
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            provider.stop()
            raise RuntimeError(f"the test provider did not answer: {log.read_text()[-2000:]}")
        time.sleep(0.2)
