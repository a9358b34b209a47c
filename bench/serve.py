"""`python -m bench.serve [--uvloop] [--memory-report FILE] -- <flags>`.

The daemon exactly as `python -m bridge serve` runs it, with switches for
measurements: `--uvloop` runs it on uvloop's event loop (to see whether
that helps); `--memory-report FILE` traces allocations (tracemalloc) and,
on SIGUSR1, writes the live memory by source file to FILE as JSON, to say
what a connection is made of.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def _report(path: Path) -> None:
    snapshot = tracemalloc.take_snapshot()
    by_file: dict[str, int] = {}
    for stat in snapshot.statistics("filename"):
        name = stat.traceback[0].filename
        for marker in ("site-packages/", "lib/python3"):
            if marker in name:
                name = name.split(marker, 1)[1]
                break
        by_file[name] = by_file.get(name, 0) + stat.size
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(by_file.items(), key=lambda kv: -kv[1]))))
    tmp.replace(path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--memory-report", type=Path)
    ours, _, rest = _split(argv)
    args = parser.parse_args(ours)
    if args.memory_report is not None:
        tracemalloc.start(1)
        path: Path = args.memory_report

        def on_signal(signum: int, frame: FrameType | None) -> None:
            _report(path)

        signal.signal(signal.SIGUSR1, on_signal)
    if args.uvloop:
        import uvloop

        uvloop.install()
    from bridge.__main__ import main as bridge_main

    return bridge_main(["serve", *rest])


def _split(argv: list[str]) -> tuple[list[str], str, list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], "--", argv[i + 1:]
    return argv, "", []


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
