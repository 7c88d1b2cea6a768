#!/usr/bin/env python
"""One rollup rebuild (`learning.rollups.rebuild()`, with insight's care rollup) on the dashboards
bench's database, with the code of the checkout given, rolled back at the end, so two checkouts
can be timed one after the other on the same data (issue 19):

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/rebuild_ab.py /tmp/before     # then VACUUM the rollup tables
    .venv/bin/python bench/rebuild_ab.py .

Prints the wall time, the PostgreSQL backend's CPU (from /proc: the database runs on this machine;
parallel workers not counted) and the load average around it; last line `BENCH rebuild_ab {json}`.
The database must hold the generated data (bench/dashboards.py --generate-only)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


class _RolledBack(Exception):
    pass


def _backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    checkout = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    sys.path.insert(0, str(checkout))
    os.chdir(checkout)
    from bench.dashboards import DEFAULT_DB_URL, setup_django

    setup_django(os.environ.get("BENCH_DASHBOARDS_DATABASE_URL", DEFAULT_DB_URL))
    from django.db import connection, transaction

    from learning import rollups

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    load = os.getloadavg()[0]
    cpu, started = _backend_cpu_s(pid), time.perf_counter()
    try:
        with transaction.atomic():
            counts = rollups.rebuild()
            took, cpu = time.perf_counter() - started, _backend_cpu_s(pid) - cpu
            raise _RolledBack
    except _RolledBack:
        pass
    loads = [round(load, 2), round(os.getloadavg()[0], 2)]
    print(f"rebuild with {checkout}: {took:.1f} s, backend CPU {cpu:.1f} s, load {loads[0]} -> {loads[1]}, {counts}")
    print("BENCH rebuild_ab " + json.dumps({"checkout": str(checkout), "rebuild_s": round(took, 1),
                                            "backend_cpu_s": round(cpu, 1), "load_avg": loads, **counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
