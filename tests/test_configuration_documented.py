"""Every environment variable the code reads is documented in docs/configuration.md.

The operations issue found eight read by the code and named nowhere (BIND, WORKER_CONCURRENCY,
LOG_LEVEL, VAR_DIR, STATIC_MANIFEST, CACHE_KEY_PREFIX, CELERY_TASK_ALWAYS_EAGER,
SILENCED_SYSTEM_CHECKS). Names are read from the code itself — every call that reads the
environment with a literal name (``os.environ.get``, ``os.environ[...]``, ``os.getenv``, the
settings' ``env_*`` helpers) in the project's packages, and every ``${NAME}`` of the Procfile —
so a new variable fails here until it has a line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("accounts", "instances", "scoring", "usage_portal")
READERS = {
    "get",
    "getenv",
    "env_int",
    "env_bool",
    "env_float",
    "env_list",
    "env_rate",
    "setdefault",
}


def _environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def names_read(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func, first = node.func, node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            environ_call = (
                isinstance(func, ast.Attribute)
                and func.attr in READERS
                and (_environ(func.value) or func.attr == "getenv")
            )
            helper_call = isinstance(func, ast.Name) and func.id.startswith("env_")
            if environ_call or helper_call:
                found.add(first.value)
        elif isinstance(node, ast.Subscript) and _environ(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.add(key.value)
    return found


def variables_in_code() -> set[str]:
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts or "sampledata" in path.parts:
                continue
            names |= names_read(ast.parse(path.read_text(), str(path)))
    names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "Procfile").read_text()))
    # Set by Django or Celery for their own use, not a setting of the portal's.
    return names - {"DJANGO_SETTINGS_MODULE"}


def test_the_finder_sees_every_way_the_code_reads_the_environment():
    tree = ast.parse(
        "os.environ.get('A'); os.environ['B']; os.getenv('C'); env_int('D', 1);"
        " env_rate('E', '1/m'); environ.get('F'); x.get('NOT_ENV')"
    )
    assert names_read(tree) == {"A", "B", "C", "D", "E", "F"}


def test_the_eight_the_issue_named_are_found():
    found = variables_in_code()
    named = {"BIND", "WORKER_CONCURRENCY", "LOG_LEVEL", "VAR_DIR", "STATIC_MANIFEST"}
    named |= {"CACHE_KEY_PREFIX", "CELERY_TASK_ALWAYS_EAGER", "SILENCED_SYSTEM_CHECKS"}
    assert named <= found


def test_every_variable_the_code_reads_is_documented():
    documented = set(
        re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs/configuration.md").read_text())
    )
    missing = sorted(variables_in_code() - documented)
    assert not missing, f"read by the code, missing from docs/configuration.md: {missing}"
