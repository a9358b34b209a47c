"""Repeated short runs of scenario 7: `python -m bench.compare_runs RATE SECONDS SEED...`.

Why: a rare event in the full run (one tab's refetch counted against the
next change) needs many short runs to look for, and each run of
bench.compare.run_rate is deterministic by its seed. Per run and design it
prints staleness (from the writer's send), the arrival of the frames that ask
for a refetch, how many the tabs received against the daemon's frames_sent,
and `asked_before_answer`: reactions that came before the writer had read its
COMMIT's answer (each was a missed change when staleness was taken from the
answer). Every result goes to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .compare import BRIDGE_DESIGNS, run_rate
from .env import cluster


def line(name: str, d: dict[str, Any]) -> str:
    return (f"  {name}: staleness p50 {d['staleness_ms'].get('p50')} max "
            f"{d['staleness_ms'].get('max')} missed {d['staleness_missed']} | frame arrival p50 "
            f"{d['received_staleness_ms'].get('p50')} max {d['received_staleness_ms'].get('max')}"
            f" missed {d['received_staleness_missed']} | frames received {d['frames_received']}"
            f" | asked before the writer's answer {d['asked_before_answer']}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_runs",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("rate", type=float)
    parser.add_argument("seconds", type=float)
    parser.add_argument("seeds", type=int, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("/tmp/compare_runs.json"))
    args = parser.parse_args()
    runs = []
    with cluster() as pg:
        for seed in args.seeds:
            load = os.getloadavg()[0]
            r = run_rate(pg, args.rate, args.seconds, seed)
            r["seed"] = seed
            r["loadavg"] = [load, os.getloadavg()[0]]
            runs.append(r)
            print(f"rate {args.rate} seed {seed}: {r['changes']} changes, load "
                  f"{load:.2f}->{os.getloadavg()[0]:.2f}, writer round trip ms "
                  f"{r['writer_rtt_ms']}, daemon frames sent {r['daemon_frames_sent']}",
                  flush=True)
            for name in BRIDGE_DESIGNS:
                print(line(name, r["designs"][name]), flush=True)
    args.out.write_text(json.dumps(runs))


if __name__ == "__main__":
    main()
