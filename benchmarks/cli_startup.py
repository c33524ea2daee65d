"""How fast the first answers come: `bench --help`, `bench list` and a spec typo.

Each command is run as a user runs it (the installed ``bench`` executable, a fresh process),
``--repeat`` times, the commands alternated so that a busy moment of the machine hits all of
them alike. Two floors are measured beside them: the bare interpreter (``python -c pass``) and
``python -c "import torch"`` (what these commands would cost if they loaded torch). Prints the
median and the spread of wall seconds per command, and the JSON with ``--json``.

    python benchmarks/cli_startup.py --repeat 15
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = str(Path(sys.executable).with_name("bench"))
COMMANDS = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "bench --help": [BENCH, "--help"],
    "bench list": [BENCH, "list"],
    "bench run --detector msq (typo)": [BENCH, "run", "--detector", "msq"],
    "bench run --detector 'msp(t=0)' (bad value)": [BENCH, "run", "--detector", "msp(t=0)"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15, help="runs per command (default 15)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "BENCH_HOME": home, "COLUMNS": "100"}
        for _ in range(args.repeat):
            for name, cmd in COMMANDS.items():
                t = time.perf_counter()
                subprocess.run(cmd, capture_output=True, env=env, cwd=home, check=False)
                times[name].append(time.perf_counter() - t)
    rows = {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "n": len(v)}
            for k, v in times.items()}
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'command':46s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for k, r in rows.items():
        print(f"{k:46s} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f}")


if __name__ == "__main__":
    main()
