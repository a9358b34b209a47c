"""Live regions and htmx in real Chromium, against real Django, the daemon and PostgreSQL.

Requests are counted by bridge.js's refetch header (X-Bridge-Live). A count
is read only after a later "sentinel" change has shown: events arrive in
commit order, so by then every refetch an earlier change could cause has
been made. Nothing here waits for time to pass.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.django_site import (
    REPO,
    Site,
    child_env,
    log_in,
    serve_example,
)
from tests.timing import scaled

DEADLINE_MS = scaled(30) * 1000
ALICE, BOB = 7, 8


@pytest.fixture
def live_site(db_url: str) -> Iterator[Site]:
    """The example project (tests.live_settings: plus /racy/) with alice (7) and bob (8)."""
    with serve_example(db_url, "tests.live_settings", ()) as site:
        yield site


class Refetches:
    """The region refetches a page made (bridge.js sends X-Bridge-Live with each)."""

    def __init__(self, page: Any) -> None:
        self.urls: list[str] = []
        page.on("request", lambda r: self.urls.append(r.url)
                if r.headers.get("x-bridge-live") else None)

    @property
    def count(self) -> int:
        return len(self.urls)


def retitle(site: Site, owner: int, title: str) -> None:
    site.sql("UPDATE example_task SET title = %s WHERE id = %s", (title, site.first_task(owner)))


def wait_live(page: Any) -> None:
    page.wait_for_function("window.PgBridge && PgBridge.client && PgBridge.client.state === 'live'",
                           timeout=DEADLINE_MS)


def wait_text(page: Any, text: str, selector: str = "#tasks") -> None:
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel).innerText.includes(text)",
        arg=[selector, text], timeout=DEADLINE_MS)


def open_region(page: Any, site: Site, url: str = "/region/") -> None:
    log_in(page, site.base, "alice", url)
    wait_live(page)


def sentinel(page: Any, site: Site, title: str) -> None:
    """A change to alice's rows that must show: every earlier refetch has been made by then."""
    retitle(site, ALICE, title)
    wait_text(page, title)


def test_region_updates_on_psql_orm_and_admin_changes(live_site: Site, page: Any,
                                                      chromium: Any) -> None:
    """A {% live %} region with no script of its own shows changes from psql, from the ORM
    (a bulk QuerySet.update in another process) and from the admin."""
    live_site.sql("UPDATE auth_user SET is_staff = true, is_superuser = true WHERE id = %s",
                  (ALICE,))
    open_region(page, live_site)
    wait_text(page, "alice task 0")
    retitle(live_site, ALICE, "edited in psql")
    wait_text(page, "edited in psql")
    subprocess.run(
        [sys.executable, "-m", "example", "shell", "-v0", "-c",
         "from example.models import Task; Task.objects.filter(owner_id=7).update(done=True,"
         " title='bulk from the ORM')"],
        env=child_env(DATABASE_URL=live_site.db_url, DJANGO_SETTINGS_MODULE="example.settings"),
        cwd=REPO, check=True, timeout=scaled(120))
    page.wait_for_function(
        "document.querySelectorAll('#tasks tr.done').length === 3", timeout=DEADLINE_MS)
    admin = page.context.new_page()
    admin.goto(f"{live_site.base}/admin/example/task/{live_site.first_task(ALICE)}/change/")
    admin.fill("#id_title", "saved in the admin")
    admin.click("input[name=_save]")
    admin.wait_for_url(f"{live_site.base}/admin/example/task/")
    wait_text(page, "saved in the admin")


def test_no_request_after_load_when_nothing_changed(live_site: Site, page: Any) -> None:
    """The page resumes from its render position: connecting costs no refetch; the first
    change costs exactly one."""
    refetches = Refetches(page)
    open_region(page, live_site)
    sentinel(page, live_site, "first change")
    assert refetches.count == 1, refetches.urls


def test_a_script_data_request_skips_the_position_query(live_site: Site, page: Any) -> None:
    """Chromium's fetch() sends Sec-Fetch-Dest: empty, so a refetchOn() refetch pays no head
    query; a navigation to the same URL reads the position."""
    page.goto(f"{live_site.base}/reads-position/")
    assert page.inner_text("body") == "yes"
    fetched = page.evaluate("fetch('/reads-position/').then(r => r.text())")
    assert fetched == "no"


def test_a_bulk_write_is_one_refetch(live_site: Site, page: Any) -> None:
    """500 rows inserted in one statement reach the region as one event: one refetch."""
    refetches = Refetches(page)
    open_region(page, live_site)
    live_site.sql("INSERT INTO example_task (title, done, owner_id, updated_at)"
                  " SELECT 'bulk ' || n, false, %s, now() FROM generate_series(1, 500) n",
                  (ALICE,))
    page.wait_for_function("document.querySelector('#task-count').innerText === '503 tasks'",
                           timeout=DEADLINE_MS)
    sentinel(page, live_site, "after the bulk insert")
    assert refetches.count == 2, refetches.urls


def test_a_region_of_table_rows_refetches_its_partial_view(live_site: Site,
                                                           page: Any) -> None:
    """{% live src="/task-rows" tag="tbody" %}: the partial's bare <tr> rows are morphed
    into the table body, and only the partial is fetched."""
    refetches = Refetches(page)
    open_region(page, live_site, "/partial-region/")
    retitle(live_site, ALICE, "row from the partial")
    wait_text(page, "row from the partial")
    assert refetches.urls == [f"{live_site.base}/task-rows"]
    assert page.evaluate("document.querySelectorAll('#tasks > tr').length") == 3
    assert page.inner_text("#intro") == "rows from a partial view"


def test_other_users_rows_do_not_refetch_the_region(live_site: Site, page: Any) -> None:
    """Bob's changes reach neither alice's socket nor her region."""
    refetches = Refetches(page)
    open_region(page, live_site)
    retitle(live_site, BOB, "bob secret")
    live_site.sql("INSERT INTO example_task (title, done, owner_id, updated_at)"
                  " VALUES ('bob new', false, %s, now())", (BOB,))
    sentinel(page, live_site, "alice sentinel")
    assert refetches.count == 1, refetches.urls
    assert "bob" not in page.inner_text("#tasks")


def test_focus_and_a_half_typed_input_survive_a_morph(live_site: Site, page: Any) -> None:
    """The row is morphed, not replaced: the focused note keeps its text, caret and focus,
    and a note typed in another row keeps its text too."""
    open_region(page, live_site)
    first, second = live_site.first_task(ALICE), live_site.first_task(ALICE) + 1
    page.fill(f"#note-{second}", "typed, then left")
    page.click(f"#note-{first}")
    page.keyboard.type("half-typ")
    row = page.evaluate_handle(f"document.getElementById('task-{first}')")
    retitle(live_site, ALICE, "changed while typing")
    wait_text(page, "changed while typing")
    assert page.evaluate("document.activeElement.id") == f"note-{first}"
    assert page.input_value(f"#note-{first}") == "half-typ"
    assert page.evaluate("document.activeElement.selectionStart") == len("half-typ")
    assert page.input_value(f"#note-{second}") == "typed, then left"
    assert page.evaluate("row => row.isConnected", row)  # the same node, morphed in place
    page.keyboard.type("ed")
    assert page.input_value(f"#note-{first}") == "half-typed"


@pytest.mark.parametrize("point", ["position", "queries", "subscribe"])
def test_a_change_at_each_racy_point_shows(live_site: Site, page: Any, point: str) -> None:
    """A change committed before the position is read, between it and the page's queries,
    or between render and subscribe is shown; at most one refetch, and one only where
    the render could not have seen it."""
    refetches = Refetches(page)
    # Land on a page without regions: a region page left open during the next load would
    # refetch for the commit itself and be counted.
    log_in(page, live_site.base, "alice", "/tasks/")
    title = f"committed at {point}"
    if point == "subscribe":  # hold bridge.js (so the subscription) until it has committed
        def commit_then_load(route: Any) -> None:
            retitle(live_site, ALICE, title)
            route.continue_()

        page.route("**/django_hooks/bridge.js", commit_then_load)
        page.goto(f"{live_site.base}/region/")
        assert title not in page.inner_text("#tasks")  # the render did not see it
    else:
        page.goto(f"{live_site.base}/racy/{point}/?owner={ALICE}&title={title}")
        assert title in page.inner_text("#tasks")  # the render saw it
    wait_live(page)
    wait_text(page, title)
    sentinel(page, live_site, "sentinel after " + point)
    if point == "position":  # seen by the render; one harmless refetch if not yet stamped
        assert refetches.count in (1, 2), refetches.urls
    else:  # its position is after the render's: replayed, one refetch
        assert refetches.count == 2, refetches.urls


def test_daemon_restart_costs_one_refetch_or_nothing(live_site: Site, page: Any) -> None:
    """A restart with changes committed while the daemon was down (changes during the
    reconnect) makes exactly one refetch, however many; one with nothing missed makes none."""
    refetches = Refetches(page)
    open_region(page, live_site)
    for restart in ("busy", "quiet"):
        live_site.daemon.stop()
        page.wait_for_function("PgBridge.client.state === 'offline'", timeout=DEADLINE_MS)
        if restart == "busy":  # three statements: three events replayed on resume
            live_site.sql("UPDATE example_task SET done = true WHERE owner_id = %s", (ALICE,))
            live_site.sql("INSERT INTO example_task (title, done, owner_id, updated_at)"
                          " VALUES ('added while down', false, %s, now())", (ALICE,))
            retitle(live_site, ALICE, "changed while the daemon was down")
        live_site.daemon.start()
        page.evaluate("PgBridge.client.reconnect()")  # instead of waiting out the backoff
        wait_live(page)
        if restart == "busy":
            wait_text(page, "changed while the daemon was down")
            sentinel(page, live_site, "after a busy restart")
            assert refetches.count == 2, refetches.urls
    sentinel(page, live_site, "after a quiet restart")
    assert refetches.count == 3, refetches.urls


def test_resync_ends_in_one_refetch(live_site: Site, page: Any) -> None:
    """A TRUNCATE (a resync on the user's row channel) refetches the region once."""
    refetches = Refetches(page)
    open_region(page, live_site)
    live_site.sql("TRUNCATE example_task")
    page.wait_for_function("document.querySelector('#task-count').innerText === '0 tasks'",
                           timeout=DEADLINE_MS)
    live_site.sql("INSERT INTO example_task (title, done, owner_id, updated_at)"
                  " VALUES ('after the truncate', false, %s, now())", (ALICE,))
    wait_text(page, "after the truncate")
    assert refetches.count == 2, refetches.urls


def test_htmx_page_updates_with_no_script_of_its_own(live_site: Site, page: Any) -> None:
    """hx-get with hx-trigger="bridge:change" and {% live_attrs %}: htmx swaps the new rows
    in; the page loads without a refetch and bob's rows never trigger one."""
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if r.headers.get("hx-request") else None)
    events: list[Any] = []
    page.expose_function("recordChange", lambda detail: events.append(detail))
    page.add_init_script("document.addEventListener('bridge:change',"
                         " e => window.recordChange(e.detail))")
    log_in(page, live_site.base, "alice", "/htmx/")
    wait_live(page)
    retitle(live_site, BOB, "bob on htmx")
    retitle(live_site, ALICE, "htmx swapped me in")
    wait_text(page, "htmx swapped me in")
    assert len(fetched) == 1 and fetched[0].endswith("/task-rows"), fetched
    assert [e["op"] for e in events] == ["UPDATE"]
    assert events[0]["channel"] == f"example_task:owner_id={ALICE}" and events[0]["pks"]


BRIDGE_JS = REPO / "django_hooks" / "static" / "django_hooks" / "bridge.js"
FAKE_SOCKET = """() => {
  window.sockets = [];
  window.WebSocket = function (url) {
    this.url = url; this.readyState = 1; this.sent = [];
    this.send = (text) => {
      const frame = JSON.parse(text);
      this.sent.push(frame);
      if (frame.type === "ping") {  // as the daemon does, after the subscribes before it
        setTimeout(() => this.onmessage({data: JSON.stringify({type: "pong"})}), 0);
      }
    };
    this.close = () => {};
    sockets.push(this);
    setTimeout(() => this.onopen && this.onopen(), 0);
  };
}"""


def start_from_config(page: Any, config: dict[str, Any]) -> None:
    """A page whose only script is a tag's config and bridge.js, on a fake socket."""
    import json

    page.set_content("<html><body><script id='pg-bridge-config' type='application/json'>"
                     + json.dumps(config) + "</script></body></html>")
    page.evaluate(FAKE_SOCKET)
    page.add_script_tag(content=BRIDGE_JS.read_text().replace(
        "var configId = script && script.getAttribute(\"data-config\");",
        "var configId = \"pg-bridge-config\";"))  # an inline copy has no data-config attribute
    page.wait_for_function("sockets.length === 1 && sockets[0].sent.length > 0",
                           timeout=DEADLINE_MS)


def test_refetchon_takes_a_model_label_and_live_channels_subscribe_since(page: Any) -> None:
    """refetchOn("example.Task") follows the channels the tag mapped the label to; a live
    channel subscribes from the render position and makes no first refetch, an ordinary
    one subscribes without `since` and refetches once when subscribed."""
    start_from_config(page, {
        "token": None, "channels": ["example_task:owner_id=7", "news"],
        "labels": {"example.Task": ["example_task:owner_id=7"]},
        "live": ["example_task:owner_id=7"], "since": "abcd1234-5-6"})
    assert page.evaluate("sockets[0].sent") == [
        {"type": "subscribe", "channel": "example_task:owner_id=7", "since": "abcd1234-5-6"},
        {"type": "subscribe", "channel": "news"}, {"type": "ping"}]
    page.wait_for_function("PgBridge.client._settling === null", timeout=DEADLINE_MS)
    page.evaluate("""() => {
      window.calls = {task: 0, news: 0};
      PgBridge.client.refetchOn("example.Task", () => { calls.task++; });
      PgBridge.client.refetchOn("news", () => { calls.news++; });
      const receive = (frame) => PgBridge.client._receive(JSON.stringify(frame));
      receive({type: "subscribed", channel: "example_task:owner_id=7", position: "abcd1234-5-6"});
      receive({type: "subscribed", channel: "news", position: "abcd1234-9-9"});
    }""")
    assert page.evaluate("calls") == {"task": 0, "news": 1}
    page.evaluate("""PgBridge.client._receive(JSON.stringify({type: "event",
      channel: "example_task:owner_id=7", position: "abcd1234-7-1", op: "UPDATE", pks: ["3"],
      table: "public.example_task", count: 1}))""")
    assert page.evaluate("calls") == {"task": 1, "news": 1}


def test_document_gets_bridge_change_for_events_and_resyncs(page: Any) -> None:
    """Plain scripts get `bridge:change` on the document with channel, op, pks and position,
    and op "RESYNC" with the reason for a resync."""
    start_from_config(page, {"token": None, "channels": ["news"]})
    details = page.evaluate("""() => {
      const seen = [];
      document.addEventListener("bridge:change", (e) => seen.push(e.detail));
      const receive = (frame) => PgBridge.client._receive(JSON.stringify(frame));
      receive({type: "event", channel: "news", position: "p1", op: "DELETE", pks: ["4"],
               table: "public.news", count: 1});
      receive({type: "resync", channel: "news", position: "p2", reason: "truncate"});
      return seen;
    }""")
    assert details == [
        {"channel": "news", "op": "DELETE", "pks": ["4"], "position": "p1",
         "table": "public.news", "count": 1},
        {"channel": "news", "op": "RESYNC", "pks": None, "position": "p2", "reason": "truncate"}]


def test_a_replay_cut_short_still_refetches_once(page: Any) -> None:
    """Events replayed before the pong wait for it; if the socket ends first they are still
    fetched, once."""
    start_from_config(page, {"token": None, "channels": ["news"], "live": ["news"],
                             "since": "abcd1234-1-1"})
    page.wait_for_function("PgBridge.client._settling === null", timeout=DEADLINE_MS)
    calls = page.evaluate("""() => {
      window.calls = 0;
      const c = PgBridge.client;
      c.refetchOn("news", () => { calls++; });
      sockets[0].send = () => {};  // from now on the daemon answers nothing
      c._subscribeAll();           // as after a reconnect: subscribes, then the ping
      for (let i = 2; i < 5; i++) {
        c._receive(JSON.stringify({type: "event", channel: "news", position: "abcd1234-" + i,
                                   op: "INSERT", pks: [String(i)], table: "t", count: 1}));
      }
      const before = calls;
      c._onClose(sockets[0], 1006, false);  // the socket drops before the pong
      return [before, calls];
    }""")
    assert calls == [0, 1]
    page.evaluate("PgBridge.client.close()")
