"""The harness side of the load generators: start worker processes, ask them, merge answers."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from array import array
from collections.abc import Sequence
from typing import Any

from .env import ROOT, CpuMeter


def sources(n: int) -> list[str]:
    """Loopback source addresses 127.0.0.2..: ~28,000 ephemeral ports each."""
    return [f"127.0.0.{i}" for i in range(2, 2 + n)]


class Clients:
    """Several `python -m bench.wsclient` processes sharing `total` connections."""

    def __init__(self, port: int, total: int, *, processes: int = 1, path: str = "/v1",
                 channels: Sequence[str] = ("example_task",), key: str = "pks",
                 source_count: int = 1, cookie: str | None = None, record: bool = True,
                 deflate: bool = False):
        self.procs: list[subprocess.Popen[str]] = []
        addresses = sources(source_count)
        processes = max(1, min(processes, total))
        for i in range(processes):
            count = total // processes + (1 if i < total % processes else 0)
            rotated = addresses[i % len(addresses):] + addresses[:i % len(addresses)]
            config = {"port": port, "count": count, "path": path, "channels": list(channels),
                      "key": key, "sources": rotated, "cookie": cookie, "record": record,
                      "deflate": deflate}
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "bench.wsclient", json.dumps(config)], cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def ask(self, cmd: str) -> list[dict[str, Any]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"cmd": cmd}) + "\n")
            proc.stdin.flush()
        answers = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"a load generator exited ({proc.wait()})")
            answers.append(json.loads(line))
        return answers

    def connect(self) -> dict[str, Any]:
        answers = self.ask("connect")
        return {"connected": sum(a["connected"] for a in answers),
                "failed": sum(a["failed"] for a in answers),
                "seconds": max(a["seconds"] for a in answers)}

    def frames(self) -> int:
        return sum(a["frames"] for a in self.ask("counts"))

    def collect(self) -> dict[str, list[float]]:
        """Arrival times by event key, merged over every process."""
        merged: dict[str, list[float]] = {}
        for answer in self.ask("collect"):
            for key, blob in answer["arrivals"].items():
                values = array("d")
                values.frombytes(base64.b64decode(blob))
                merged.setdefault(key, []).extend(values)
        return merged

    def meter(self) -> CpuMeter:
        return CpuMeter(self.pids)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                    proc.stdin.flush()
                    proc.wait(20)
                except (OSError, subprocess.TimeoutExpired):
                    proc.kill()
                    proc.wait(5)

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
