"""The declared layer order, checked over the import graph of the project's own modules.

    pure core  ←  models and querysets  ←  services and their tasks  ←  interfaces

(README, "Code map"). A module may import only its own layer or a lower one; the page layer
(``usage_portal.web``) is imported by nothing but itself and the URL conf; a task module only by
its own app (writes announce through ``accounts.changes``, they never queue another app's
tasks); no function-local import of a project module dodges a cycle (``AppConfig.ready`` only);
no two modules import each other, directly or round a loop; the core imports no framework.
Every module must be placed in a layer: a new module fails here until it is.
"""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("accounts", "instances", "scoring", "usage_portal")

CORE, MODELS, SERVICES, INTERFACES = range(4)
LAYER_NAMES = ("pure core", "models and querysets", "services and tasks", "interfaces")

#: Module patterns → layer, first match wins.
LAYERS: tuple[tuple[str, int], ...] = (
    # The config package: its __init__ loads the Celery app, settings read the environment.
    ("usage_portal", INTERFACES),
    ("usage_portal.settings", INTERFACES),
    ("instances.parsing", CORE),
    ("instances.transport", CORE),
    ("instances.companions", CORE),
    ("instances.metrics", CORE),
    ("instances.versions", CORE),
    ("instances.saas", CORE),
    ("scoring.methodology", CORE),
    ("scoring.scorecard", CORE),
    ("scoring.drops", CORE),
    ("scoring.overall", CORE),
    ("scoring.schemes", CORE),
    ("usage_portal.logs", CORE),  # the request id and the JSON line: stdlib and its formatter
    ("usage_portal.version", CORE),
    ("scoring.spreadsheet", CORE),
    ("accounts.zones", CORE),  # the time zones the portal knows: zoneinfo only
    ("*.models", MODELS),
    ("*.querysets", MODELS),
    ("accounts.permissions", MODELS),
    ("accounts.changes", MODELS),
    ("accounts.roles", MODELS),
    ("accounts.importers", MODELS),  # CRM rows parsed into the models' choices
    ("*.services", SERVICES),
    ("*.services.*", SERVICES),
    ("*.tasks", SERVICES),
    ("accounts.audit", SERVICES),  # the audit trail's one writer
    ("accounts.sso", SERVICES),  # single sign-on's backend: creates users, sets their roles
    ("instances.labels", SERVICES),
    ("instances.rules", SERVICES),
    ("instances.retention", SERVICES),
    ("scoring.exports", SERVICES),
    ("scoring.alerts", SERVICES),
    ("scoring.listing", SERVICES),  # the accounts' stored listing: its one writer
    ("scoring.listeners", SERVICES),
    ("scoring.jobruns", SERVICES),
    ("usage_portal.celery", SERVICES),
    ("usage_portal.broker", SERVICES),
    ("usage_portal.sampledata", SERVICES),
    ("usage_portal.sampledata.*", SERVICES),
    ("usage_portal.web", INTERFACES),
    ("usage_portal.web.*", INTERFACES),
    ("usage_portal.urls", INTERFACES),
    ("usage_portal.wsgi", INTERFACES),
    ("usage_portal.gunicorn_hooks", INTERFACES),  # gunicorn's server hooks (Procfile)
    ("usage_portal.context_processors", INTERFACES),
    ("usage_portal.staticfinders", INTERFACES),  # plotly.js, from the plotly package
    ("usage_portal.contentpolicy", INTERFACES),  # the CSP's hashes, read by the settings
    ("usage_portal.middleware", INTERFACES),
    ("usage_portal.dbrouting", INTERFACES),  # the read replica's router and middleware
    ("usage_portal.sentry", INTERFACES),  # started by the settings
    ("usage_portal.caches", INTERFACES),  # the Redis cache backend the settings name
    ("*.admin", INTERFACES),
    ("*.apps", INTERFACES),
    ("*.management", INTERFACES),
    ("*.management.*", INTERFACES),
    ("accounts", CORE),  # the bare app packages: empty __init__ modules
    ("instances", CORE),
    ("scoring", CORE),
)

#: Frameworks the pure core must not import.
FRAMEWORKS = ("django", "celery", "kombu", "redis", "psycopg")

#: Who may import the page layer besides itself.
WEB_IMPORTERS = ("usage_portal.urls",)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    local: bool  # inside a function body


def layer_of(module: str) -> int | None:
    for pattern, layer in LAYERS:
        if fnmatch.fnmatchcase(module, pattern):
            return layer
    return None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files(root: Path = ROOT) -> list[Path]:
    return sorted(
        p
        for package in PACKAGES
        for p in (root / package).rglob("*.py")
        if "migrations" not in p.parts
    )


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def imports_of(source: str, module: str, *, is_package: bool, known: set[str]) -> list:
    """Every import in ``source``: project edges (``Edge``) and third-party top names (str)."""
    tree = ast.parse(source)
    skip = _type_checking_lines(tree)
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for child in ast.walk(node):
                if isinstance(child, ast.Import | ast.ImportFrom):
                    in_function.add(id(child))
    found: list = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in skip:
            continue
        local = id(node) in in_function
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _resolve(module, is_package, node.level, node.module)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in targets:
            top = target.split(".")[0]
            if top in PACKAGES:
                # ``import a.b.c`` binds a package chain; the deepest known module is the edge.
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != module:
                    found.append(Edge(module, target, node.lineno, local))
            else:
                found.append(top)
    return found


def _in_ready(source: str, line: int) -> bool:
    tree = ast.parse(source)
    return any(
        isinstance(node, ast.FunctionDef)
        and node.name == "ready"
        and node.lineno <= line <= (node.end_lineno or node.lineno)
        for node in ast.walk(tree)
    )


def _app(module: str) -> str:
    return module.split(".")[0] if not module.startswith("usage_portal") else module


def violations(files: dict[str, tuple[str, bool]]) -> list[str]:
    """The rule breaks in ``files`` (module → (source, is_package)), one line each."""
    known = set(files)
    problems: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, (source, is_package) in sorted(files.items()):
        layer = layer_of(module)
        if layer is None:
            problems.append(f"{module}: no layer declared for it (tests/test_architecture.py)")
            continue
        for found in imports_of(source, module, is_package=is_package, known=known):
            if isinstance(found, str):
                if layer == CORE and found in FRAMEWORKS:
                    problems.append(f"{module}: the pure core imports {found}")
                continue
            edge = found
            target_layer = layer_of(edge.target)
            where = f"{module}:{edge.line} imports {edge.target}"
            if edge.local and not _in_ready(source, edge.line):
                problems.append(f"{where} inside a function (dodging a cycle?)")
                continue
            if edge.local:
                continue  # AppConfig.ready: connecting listeners once the registry is ready
            graph[module].add(edge.target)
            if target_layer is not None and target_layer > layer:
                problems.append(
                    f"{where}: {LAYER_NAMES[layer]} may not import {LAYER_NAMES[target_layer]}"
                )
            if edge.target.startswith("usage_portal.web") and not (
                module.startswith("usage_portal.web") or module in WEB_IMPORTERS
            ):
                problems.append(f"{where}: only the page layer and the URL conf import it")
            if edge.target.endswith(".tasks") and _app(edge.target) != _app(module):
                problems.append(f"{where}: another app's tasks (announce a change instead)")
    problems += [f"import cycle: {' → '.join(cycle)}" for cycle in _cycles(graph)]
    return list(dict.fromkeys(problems))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append([*sorted(component), sorted(component)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def project_sources() -> dict[str, tuple[str, bool]]:
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in project_files()}


# --------------------------------------------------------------------------------------------------
# The project


def test_the_code_keeps_the_declared_layer_order():
    problems = violations(project_sources())
    assert problems == [], "\n".join(problems)


def test_every_layer_is_populated():
    layers = {layer_of(m) for m in project_sources()}
    assert layers == {CORE, MODELS, SERVICES, INTERFACES}


# --------------------------------------------------------------------------------------------------
# The checker itself: each rule fails on a forbidden edge


def _world(**modules: str) -> dict[str, tuple[str, bool]]:
    base = {
        "scoring.methodology": "",
        "instances.models": "from scoring import methodology\n",
        "instances.labels": "from instances.models import x\n",
        "scoring.tasks": "from instances import labels\n",
        "usage_portal.web.c360.views": "from instances.labels import x\n",
        "accounts.admin": "from instances.labels import x\n",
        "scoring.apps": "class C:\n    def ready(self):\n        from scoring import tasks\n",
    }
    base.update(modules)
    return {name: (source, False) for name, source in base.items()}


def test_checker_accepts_a_world_that_keeps_the_rules():
    assert violations(_world()) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "instances.models",
            "from instances.labels import x\n",
            "models and querysets may not import services and tasks",
        ),
        ("scoring.methodology", "from instances import models\n", "pure core may not import"),
        ("scoring.methodology", "import django.db\n", "the pure core imports django"),
        (
            "instances.labels",
            "from scoring.tasks import refresh_companies\n",
            "another app's tasks",
        ),
        (
            "instances.labels",
            "def f():\n    from scoring import tasks\n",
            "inside a function",
        ),
        (
            "accounts.admin",
            "from usage_portal.web.c360 import views\n",
            "only the page layer and the URL conf import it",
        ),
        ("scoring.newthing", "", "no layer declared"),
    ],
    ids=[
        "models→services",
        "core→models",
        "core→django",
        "labels→scoring.tasks",
        "local",
        "admin→web",
        "unplaced",
    ],
)
def test_checker_refuses_a_forbidden_edge(module, source, expected):
    problems = violations(_world(**{module: source}))
    assert any(expected in p for p in problems), problems


def test_checker_finds_a_cycle_within_a_layer():
    world = _world(
        **{
            "instances.labels": "from instances.rules import x\n",
            "instances.rules": "from instances.labels import y\n",
        }
    )
    assert "import cycle: instances.labels → instances.rules → instances.labels" in violations(
        world
    )
