"""Run a command and write its own peak RSS and CPU time to a file (``procs.run`` uses it).

Linux keeps, across ``exec``, the higher of a process's peak RSS and that of the process image
it replaces, and a child starts as a copy of its parent: ``ru_maxrss`` of a command the bench
started reported at least the bench's own size (370 MB at 50,000 accounts, once the ingest phase
had read the book's instances to write its payloads), whatever the command used. Started from
this small process instead, the command's figure is its own (and its children's).

Usage: ``python bench/peak.py OUT_FILE COMMAND...``; exits with the command's status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main(argv: list[str]) -> int:
    out, cmd = argv[0], argv[1:]
    proc = subprocess.Popen(cmd)  # stdin, stdout, stderr and process group are this one's
    _, status, usage = os.wait4(proc.pid, 0)
    with open(out, "w") as handle:
        json.dump(
            {
                "max_rss_kb": usage.ru_maxrss,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
            },
            handle,
        )
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
