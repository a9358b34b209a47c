"""bridge.js in Chromium: throttling, first-subscribe refetch, token refresh, dead connections."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tests.django_site import REPO, Site, free_port, log_in
from tests.timing import scaled

BRIDGE_JS = REPO / "django_hooks" / "static" / "django_hooks" / "bridge.js"
DEADLINE_MS = scaled(30) * 1000


def test_throttle_leads_then_folds_into_one_trailing_call(page: Any) -> None:
    """Burst 1: at once on the first change, one call for the rest of the window."""
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(BRIDGE_JS))
    page.evaluate("""() => {
      window.calls = [];
      window.trigger = PgBridge.throttle(() => { calls.push(Date.now()); }, 300, 1);
      for (let i = 0; i < 10; i++) trigger();
    }""")
    assert page.evaluate("calls.length") == 1
    page.wait_for_function("calls.length === 2", timeout=DEADLINE_MS)
    time.sleep(scaled(0.6))  # past the window: nothing else was owed
    assert page.evaluate("calls.length") == 2


def test_throttle_bucket_sends_a_burst_then_folds_into_one_per_token(page: Any) -> None:
    """Burst 3: three changes call at once, the rest fold into one call when a token is back.

    Playwright's fake clock drives Date.now and setTimeout, so "not yet" and
    "a window later" are exact, with no sleeping and no timing assumption.
    """
    page.clock.install(time=0)
    page.clock.pause_at(1000)  # time moves only when the test says so
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(BRIDGE_JS))
    page.evaluate("""() => {
      window.calls = 0;
      window.trigger = PgBridge.throttle(() => { calls++; }, 1000, 3);
    }""")

    def trigger(times: int = 1) -> int:
        for _ in range(times):  # one evaluate each: the previous call has finished
            page.evaluate("trigger()")
        return int(page.evaluate("calls"))

    assert trigger() == 1  # a fresh bucket holds one token: the first load
    assert trigger() == 1  # the next change waits for a token, as polling would
    page.clock.run_for(1000)
    assert page.evaluate("calls") == 2
    page.clock.run_for(3000)  # three quiet windows save three calls, not more
    assert [trigger() for _ in range(3)] == [3, 4, 5]  # the burst: each at once
    assert trigger(5) == 5  # no token left: five changes owe one call
    page.clock.run_for(999)
    assert page.evaluate("calls") == 5  # the next token is not back yet
    page.clock.run_for(1)
    assert page.evaluate("calls") == 6  # the five folded into one, when it came
    page.clock.run_for(10_000)
    assert page.evaluate("calls") == 6  # nothing else was owed
    assert trigger(4) == 9  # the quiet refilled the bucket to 3, not more
    page.clock.run_for(1000)
    assert page.evaluate("calls") == 10


def test_refetchon_defaults_to_a_burst_of_three(page: Any) -> None:
    """refetchOn without options: after two quiet windows, three events fetch at once and a
    fourth waits for a token."""
    page.clock.install(time=0)
    page.clock.pause_at(1000)  # time moves only when the test says so
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(BRIDGE_JS))
    page.evaluate("""() => {
      window.WebSocket = function () { this.readyState = 0; this.send = () => {}; };
      window.fetches = 0;
      window.c = PgBridge.connect("ws://127.0.0.1:9/v1", {});
      c.refetchOn("tasks", () => { fetches++; });
      window.event = () => c._receive(JSON.stringify({type: "event", channel: "tasks"}));
    }""")
    page.clock.run_for(2000)  # one token to start with, two saved while nothing changed
    for expected in (1, 2, 3, 3):
        page.evaluate("event()")
        assert page.evaluate("fetches") == expected
    page.clock.run_for(1000)
    assert page.evaluate("fetches") == 4


def test_close_drops_an_owed_refetch(page: Any) -> None:
    """A refetch owed when the page closes its client never runs afterwards."""
    page.clock.install(time=0)
    page.clock.pause_at(1000)  # time moves only when the test says so
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(BRIDGE_JS))
    page.evaluate("""() => {
      window.WebSocket = function () {
        this.readyState = 0; this.send = () => {}; this.close = () => {};
      };
      window.fetches = 0;
      window.c = PgBridge.connect("ws://127.0.0.1:9/v1", {});
      c.refetchOn("tasks", () => { fetches++; });
      window.event = () => c._receive(JSON.stringify({type: "event", channel: "tasks"}));
    }""")
    page.evaluate("event()")
    page.evaluate("event()")  # no token left: owed, for when the next one comes
    assert page.evaluate("fetches") == 1
    page.evaluate("c.close()")
    page.clock.run_for(5000)
    assert page.evaluate("fetches") == 1


def test_throttle_runs_one_fetch_at_a_time(page: Any) -> None:
    """A change during a slow fetch waits for it to end: never two fetches in flight."""
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(BRIDGE_JS))
    page.evaluate("""() => {
      window.inFlight = 0; window.maxInFlight = 0; window.done = 0; window.release = [];
      window.trigger = PgBridge.throttle(() => {
        inFlight++; maxInFlight = Math.max(maxInFlight, inFlight);
        return new Promise(r => release.push(r)).then(() => { inFlight--; done++; });
      }, 0);
      trigger(); trigger(); trigger();
    }""")
    assert page.evaluate("release.length") == 1
    page.evaluate("release[0]()")
    page.wait_for_function("release.length === 2", timeout=DEADLINE_MS)
    page.evaluate("release[1]()")
    page.wait_for_function("done === 2", timeout=DEADLINE_MS)
    assert page.evaluate("maxInFlight") == 1


def test_covers_matches_grants(page: Any) -> None:
    """on()/refetchOn() patterns match channels the way token grants do."""
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(BRIDGE_JS))
    assert page.evaluate("""() => [
      PgBridge.covers("tasks", "tasks"), PgBridge.covers("tasks", "tasks:owner_id=7"),
      PgBridge.covers("tasks:owner_id=7", "tasks:owner_id=8"), PgBridge.covers("task", "tasks"),
      PgBridge.covers("*", "anything")]""") == [True, True, False, False, True]


def test_first_subscribed_refetches_once(example_site: Site, page: Any) -> None:
    """The live page fetches on load and once more when its subscription goes live, no more."""
    fetches: list[str] = []
    page.on("request", lambda r: fetches.append(r.url) if r.url.endswith("/task-list") else None)
    log_in(page, example_site.base, "alice", "/live/")
    page.wait_for_selector("#bridge-state[data-state=live]", timeout=DEADLINE_MS)
    page.wait_for_function(
        "performance.getEntriesByType('resource')"
        ".filter(e => e.name.endsWith('/task-list')).length >= 2", timeout=DEADLINE_MS)
    time.sleep(scaled(1.5))  # quiet: a third fetch would have had time to start
    assert len(fetches) == 2


def test_refused_token_is_refreshed_from_the_token_view(example_site: Site, page: Any) -> None:
    """After a 4001 (token too old for the daemon), bridge.js fetches /bridge/token and goes on."""
    daemon = example_site.daemon
    daemon.stop()
    daemon.args = (*daemon.args, "--token-max-age", "2s")
    daemon.start()
    token_requests: list[str] = []
    page.on("request", lambda r: token_requests.append(r.url) if "/bridge/token" in r.url
            else None)
    log_in(page, example_site.base, "alice", "/live/")
    page.wait_for_selector("#bridge-state[data-state=live]", timeout=DEADLINE_MS)
    daemon.stop()
    page.wait_for_selector("#bridge-state[data-state=offline]", timeout=DEADLINE_MS)
    time.sleep(scaled(2.5))  # the page's token is now older than the daemon accepts
    daemon.start()
    page.wait_for_selector("#bridge-state[data-state=live]", timeout=DEADLINE_MS)
    assert token_requests and "channel=example_task%3Aowner_id%3D7" in token_requests[0]
    example_site.sql("UPDATE example_task SET title = 'after refresh' WHERE owner_id = 7")
    page.wait_for_function(
        "document.getElementById('tasks').innerText.includes('after refresh')",
        timeout=DEADLINE_MS)


def test_dead_connection_is_found_by_ping(example_site: Site, page: Any) -> None:
    """A daemon that stops answering (SIGSTOP) is detected by ping/pong, then reconnected."""
    log_in(page, example_site.base, "alice", "/live/")
    page.wait_for_selector("#bridge-state[data-state=live]", timeout=DEADLINE_MS)
    page.evaluate("""() => {
      const c = PgBridge.client;
      c.options.pingInterval = 300; c.options.pongTimeout = 1000; c.options.maxDelay = 1000;
      c._schedulePing();
    }""")
    proc = example_site.daemon.proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        page.wait_for_selector("#bridge-state[data-state=offline]", timeout=DEADLINE_MS)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    page.wait_for_selector("#bridge-state[data-state=live]", timeout=DEADLINE_MS)
    example_site.sql("UPDATE example_task SET title = 'after the stall' WHERE owner_id = 7")
    page.wait_for_function(
        "document.getElementById('tasks').innerText.includes('after the stall')",
        timeout=DEADLINE_MS)


HEAD_PAGE = """<!doctype html><html><head>
<script>{bridge_js}</script>
<script>
  window.errors = [];
  window.addEventListener("error", e => errors.push(e.message));
  var bridge = PgBridge.connect("ws://127.0.0.1:{port}/v1", {{channels: ["notes"]}});
  bridge.onState(state => document.body.dataset.bridge = state);
  bridge.refetchOn("notes", () => {{ document.getElementById("list").textContent = "x"; }});
  PgBridge.whenParsed(() => document.getElementById("list").dataset.loaded = "yes");
</script>
</head><body><ul id="list"></ul>{filler}</body></html>"""


def test_snippet_in_head_waits_for_the_body(page: Any) -> None:
    """The page snippet in <head> (document.body still null) throws nothing and sets state."""
    html = HEAD_PAGE.format(bridge_js=BRIDGE_JS.read_text(), port=free_port(),
                            filler="<p>filler</p>" * 2000)
    page.route("http://page.test/", lambda route: route.fulfill(body=html,
                                                                 content_type="text/html"))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("http://page.test/")
    page.wait_for_selector("body[data-bridge=offline]", timeout=DEADLINE_MS)
    assert page.evaluate("document.getElementById('list').dataset.loaded") == "yes"
    assert errors == [] and page.evaluate("errors") == []
