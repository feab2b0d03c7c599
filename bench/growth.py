"""The growth table: the main figures of the 5,000-, 20,000- and 50,000-account runs side by side.

    .venv/bin/python bench/growth.py            # print it
    .venv/bin/python bench/growth.py --write    # and put it in bench/SCALE_OUT.md

Reads ``bench/results.json`` (``make bench``), ``bench/results-20000.json``
(``bench/run.py --companies 20000``) and ``bench/results-large.json`` (``make bench-large``);
a run that is missing leaves its column empty. The slope column says how a figure moves
between the smallest and the largest book: "flat" (under 2× for 10× the accounts), "linear"
(5–20×), else the multiple itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = (
    ("5,000", "results.json"),
    ("20,000", "results-20000.json"),
    ("50,000", "results-large.json"),
)
START, END = "<!-- growth:start -->", "<!-- growth:end -->"

#: (label, area, subject (or a prefix ending in "*"), figure name)
ROWS = (
    ("pings stored", "dataset", "size", "pings"),
    ("database size (MB)", "dataset", "size", "database"),
    ("generate_load_data (s)", "dataset", "generate_load_data*", "total"),
    ("floor page, median (ms)", "pages: floor", "floor*", "median"),
    (
        "C360 Summary, largest account, warm, median (ms)",
        "pages: C360",
        "Summary · largest*",
        "median",
    ),
    (
        "C360 Summary, largest account, first view after a change, median (ms)",
        "pages: C360 cold",
        "Summary · largest*",
        "median",
    ),
    ("dashboard, ops default, median (ms)", "pages: dashboard", "default, ops*", "median"),
    ("dashboard, last page, median (ms)", "pages: dashboard", "last page", "median"),
    (
        "dashboard, sorted by Unknown count, median (ms)",
        "pages: dashboard",
        "sorted by Unknown*",
        "median",
    ),
    ("dashboard CSV of every account, first byte (s)", "exports", "dashboard CSV*", "first byte"),
    ("dashboard CSV of every account, whole file (s)", "exports", "dashboard CSV*", "whole file"),
    (
        "dashboard XLSX, web process peak RSS (MB)",
        "exports",
        "dashboard XLSX*",
        "peak RSS of the web process",
    ),
    ("recompute --all, one process (s)", "recompute", "recompute_scores --all", "seconds"),
    (
        "recompute --all --fan-out, 2 processes (s)",
        "recompute",
        "recompute_scores --all --fan-out*",
        "seconds",
    ),
    (
        "fan-out, nothing changed (s)",
        "recompute",
        "recompute_scores --all --fan-out (scoring pool, 2 processes), nothing changed",
        "seconds",
    ),
    ("ingest_pings (pings/s)", "ingest", "ingest_pings*", "pings/s"),
    ("POST /usage_data (pings/s)", "ingest", "POST /usage_data*", "pings/s"),
    (
        "POST /usage_data, server CPU per ping (ms)",
        "ingest",
        "POST /usage_data*",
        "server CPU per ping",
    ),
    (
        "ping -> score p95, during the recompute (s)",
        "end to end",
        "ping posted -> company score updated, during*",
        "p95",
    ),
    ("recompute_scores, peak RSS (MB)", "memory", "recompute_scores", "peak RSS, --all*"),
    ("ingest_pings, peak RSS (MB)", "memory", "ingest_pings", "peak RSS, 2,000*"),
    (
        "scoring pool, peak RSS of a process at the end (MB)",
        "memory",
        "celery worker pool 'scoring' (2 processes)",
        "peak RSS of largest*",
    ),
    (
        "scoring pool, peak RSS during the soak (MB)",
        "memory",
        "celery worker pool 'scoring' (2 processes), score refresh tasks",
        "peak RSS of largest process, 10,000*",
    ),
    ("gunicorn, peak RSS of a process (MB)", "memory", "gunicorn", "peak RSS of largest*"),
)


def _match(name: str, pattern: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def lookup(results: dict, area: str, subject: str, figure: str):
    for subject_name, figures in results.get("areas", {}).get(area, {}).items():
        if not _match(subject_name, subject):
            continue
        for name, value in figures.items():
            if _match(name, figure):
                return value.get("value")
    return None


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return f"{value:,}"


def slope(first, last, accounts_ratio: float) -> str:
    if not isinstance(first, int | float) or not isinstance(last, int | float) or not first:
        return ""
    ratio = last / first
    if ratio < 2:
        return f"flat ({ratio:.1f}×)"
    if 0.5 * accounts_ratio <= ratio <= 2 * accounts_ratio:
        return f"linear ({ratio:.1f}×)"
    return f"{ratio:.1f}×"


def table(runs: dict[str, dict]) -> str:
    labels = [label for label, _ in RUNS]
    lines = [
        "| figure | " + " | ".join(f"{label} accounts" for label in labels) + " | slope |",
        "|---|" + "---:|" * len(labels) + "---|",
    ]
    present = [label for label in labels if label in runs]
    for row_label, area, subject, figure in ROWS:
        values = {label: lookup(runs[label], area, subject, figure) for label in present}
        cells = [_fmt(values.get(label)) for label in labels]
        trend = ""
        if len(present) >= 2:
            first, last = present[0], present[-1]
            accounts = float(last.replace(",", "")) / float(first.replace(",", ""))
            trend = slope(values[first], values[last], accounts)
        lines.append(f"| {row_label} | " + " | ".join(cells) + f" | {trend} |")
    notes = []
    for label in present:
        meta = runs[label].get("meta", {})
        summary = runs[label].get("summary", {})
        when, commit = meta.get("started_at", "?")[:16], meta.get("git", "?")
        held = f"{summary.get('hold', '?')} of {summary.get('targets', '?')} targets held"
        notes.append(f"- {label} accounts: run of {when} at {commit}, {held}.")
    return "\n".join(lines + [""] + notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the table in SCALE_OUT.md")
    args = parser.parse_args(argv)
    runs = {}
    for label, name in RUNS:
        path = HERE / name
        if path.exists():
            runs[label] = json.loads(path.read_text())
    if not runs:
        print("no bench/results*.json yet: run make bench first", file=sys.stderr)
        return 2
    text = table(runs)
    print(text)
    if args.write:
        doc = HERE / "SCALE_OUT.md"
        body = doc.read_text()
        if START not in body or END not in body:
            print(f"{doc}: no {START} … {END} markers to write between", file=sys.stderr)
            return 2
        head, rest = body.split(START, 1)
        _, tail = rest.split(END, 1)
        doc.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
