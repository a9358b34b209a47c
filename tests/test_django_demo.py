"""`make demo` (python -m example.demo): everything comes up, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from example import devdb
from tests.django_site import REPO, Site, child_env, free_port, http_ok, stop_process
from tests.timing import scaled


def test_demo_starts_everything_and_sigint_stops_it_all(tmp_path: Path) -> None:
    """The demo makes its own key, prints its URLs once Django and the bridge answer; SIGINT
    stops every process."""
    datadir = tmp_path / "pgdata"
    http_port, bridge_port = free_port(), free_port()
    key_file = tmp_path / "demo_secret_key"
    env = child_env(EXAMPLE_SECRET_KEY_FILE=str(key_file))
    env.pop("DATABASE_URL", None)  # the embedded PostgreSQL path, as on a fresh machine
    env.pop("DJANGO_SECRET_KEY", None)  # and no key: the demo makes its own
    env.pop("BRIDGE_SECRET_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "example.demo", "--datadir", str(datadir),
         "--http-port", str(http_port), "--bridge-port", str(bridge_port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + scaled(120)
        while not any("Task page:" in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        output = "".join(lines)
        assert f"http://127.0.0.1:{http_port}/tasks/" in output
        assert "Log in as admin / admin" in output
        assert f"demo: signing tokens with a new random key, kept in {key_file}" in output
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert http_ok(f"http://127.0.0.1:{http_port}/accounts/login/")
        assert http_ok(f"http://127.0.0.1:{bridge_port}/readyz")
        assert devdb.is_running(datadir)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(scaled(60)) == 0, "".join(lines)
    finally:
        stop_process(proc)
        reader.join(scaled(10))
        devdb.stop(datadir, mode="immediate")
    _, alive = psutil.wait_procs(children, timeout=scaled(10))
    assert alive == []
    assert not devdb.is_running(datadir)


def test_example_settings_reach_the_demo_daemons_metrics(example_site: Site) -> None:
    """The admin's Bridge page, on the example settings, reads the daemon the demo runs."""
    script = ("import json; from django_hooks.admin_views import collect;"
              " print(json.dumps(collect()['totals']))")
    out = subprocess.run(
        [sys.executable, "-m", "example", "shell", "-v0", "-c", script],
        env=child_env(DATABASE_URL=example_site.db_url, BRIDGE_PORT=str(example_site.daemon.port)),
        cwd=REPO, check=True, capture_output=True, text=True, timeout=scaled(60),
    ).stdout
    totals = json.loads(out)
    assert totals["daemons"] == 1 and totals["up"] == 1 and totals["ready"] == 1
