"""The example pages in real Chromium, against real Django, the real daemon and PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.django_site import Site, log_in
from tests.timing import scaled

DEADLINE_MS = scaled(30) * 1000


def wait_text(page: Any, text: str) -> None:
    """Wait until the task table shows `text` (a generous deadline, no reload)."""
    page.wait_for_function(
        "text => document.getElementById('tasks').innerText.includes(text)",
        arg=text, timeout=DEADLINE_MS,
    )


def test_example_page_shows_a_row_changed_with_psql(example_site: Site, page: Any) -> None:
    """The original-snippet task page shows a change made by another writer, without reload."""
    log_in(page, example_site.base, "alice", "/tasks/")
    wait_text(page, "alice task 0")
    example_site.sql("UPDATE example_task SET title = 'edited in psql' WHERE id = %s",
                     (example_site.first_task(7),))
    wait_text(page, "edited in psql")


def test_original_snippet_fetches_once_per_change(example_site: Site, page: Any) -> None:
    """The verbatim snippet on legacy `/` makes exactly one /task-list fetch per change."""
    fetches: list[str] = []
    frames: list[str] = []
    page.on("request", lambda r: fetches.append(r.url) if r.url.endswith("/task-list") else None)
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
    log_in(page, example_site.base, "alice", "/tasks/")
    wait_text(page, "alice task 0")
    assert len(fetches) == 1  # the `updated` sent right after connect
    task = example_site.first_task(7)
    quiet = scaled(1.5)  # past the daemon's 300ms legacy window: a late extra would show
    for n, statement in enumerate([
        "UPDATE example_task SET title = %s WHERE id = {task}",
        "UPDATE example_task SET title = %s WHERE owner_id = 7",
    ]):
        marker = f"change-{n}"
        example_site.sql(statement.format(task=task), (marker,))
        wait_text(page, marker)
        time.sleep(quiet)
        assert len(fetches) == n + 2, fetches
    assert frames == ["updated"] * len(fetches)


def test_live_page_catches_up_after_the_daemon_restarts(example_site: Site, page: Any) -> None:
    """Daemon stopped, rows changed, daemon started: bridge.js resumes and the page catches up."""
    log_in(page, example_site.base, "alice", "/live/")
    page.wait_for_selector("#bridge-state[data-state=live]", timeout=DEADLINE_MS)
    wait_text(page, "alice task 0")
    example_site.daemon.stop()
    page.wait_for_selector("#bridge-state[data-state=offline]", timeout=DEADLINE_MS)
    example_site.sql("UPDATE example_task SET title = 'changed while down' WHERE id = %s",
                     (example_site.first_task(7),))
    example_site.daemon.start()
    wait_text(page, "changed while down")
    page.wait_for_selector("#bridge-state[data-state=live]", timeout=DEADLINE_MS)


def test_user_of_owner_7_sees_nothing_of_owner_8(example_site: Site, page: Any) -> None:
    """A page whose token covers owner 7 receives no event for owner 8's rows."""
    frames: list[dict[str, Any]] = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda f: frames.append(json.loads(f)) if f.startswith("{") else None))
    log_in(page, example_site.base, "alice", "/live/")
    page.wait_for_selector("#bridge-state[data-state=live]", timeout=DEADLINE_MS)
    example_site.sql("UPDATE example_task SET title = 'bob secret' WHERE owner_id = 8")
    example_site.sql("INSERT INTO example_task (title, done, owner_id, updated_at)"
                     " VALUES ('bob new', false, 8, now())")
    example_site.sql("UPDATE example_task SET title = 'alice sentinel' WHERE id = %s",
                     (example_site.first_task(7),))
    wait_text(page, "alice sentinel")
    events = [f for f in frames if f.get("type") == "event"]
    assert events and all(f["channel"] == "example_task:owner_id=7" for f in events), events
    subscribed = [f["channel"] for f in frames if f.get("type") == "subscribed"]
    assert subscribed == ["example_task:owner_id=7"]
    assert "bob" not in page.inner_text("#tasks")
