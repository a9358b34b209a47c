"""A committed change reaches /v1 subscribers and legacy clients (real PostgreSQL, real sockets)."""

from __future__ import annotations

import time

import psycopg
import pytest

from bridge.server import Daemon
from tests.fix_bridge import WsClient, caught_up, execute, legacy_url, token, v1_url

pytestmark = pytest.mark.asyncio


async def _subscriber(daemon: Daemon, *chans: str) -> WsClient:
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task"))
    for channel in chans:
        await client.subscribe(channel)
    return client


async def test_insert_update_delete_truncate_give_events(daemon: Daemon, watched_db: str) -> None:
    """Each operation gives one event with table, op, pks and count."""
    client = await _subscriber(daemon, "example_task")
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('a', 7), ('b', 8)")
    frame = await client.expect("event", channel="example_task", table="public.example_task",
                                op="INSERT", count=2)
    assert sorted(frame["pks"]) == ["1", "2"]
    execute(watched_db, "UPDATE example_task SET done = true WHERE id = 2")
    await client.expect("event", op="UPDATE", pks=["2"], count=1)
    execute(watched_db, "DELETE FROM example_task WHERE id = 1")
    await client.expect("event", op="DELETE", pks=["1"], count=1)
    execute(watched_db, "TRUNCATE example_task")
    await client.expect("event", op="TRUNCATE", pks=None, count=0)
    await client.close()


async def test_event_positions_increase(daemon: Daemon, watched_db: str) -> None:
    """Every event carries a position, and positions are distinct and ordered."""
    client = await _subscriber(daemon, "example_task")
    for title in ("a", "b", "c"):
        execute(watched_db, "INSERT INTO example_task (title) VALUES (%s)", (title,))
    frames = [await client.expect("event") for _ in range(3)]
    keys = [daemon.hub.parse(f["position"]) for f in frames]
    assert None not in keys
    assert keys == sorted(keys) and len(set(keys)) == 3
    await client.close()


async def test_truncate_resyncs_row_channels(daemon: Daemon, watched_db: str) -> None:
    """TRUNCATE is a resync on the table's row channels (no row can be named)."""
    client = await _subscriber(daemon, "example_task:owner_id=7")
    execute(watched_db, "TRUNCATE example_task")
    await client.expect("resync", channel="example_task:owner_id=7", reason="truncate")
    assert daemon.metrics.registry.get_sample_value(
        "bridge_resyncs_total", {"reason": "truncate"}) == 1
    await client.close()


async def test_write_after_subscribed_is_delivered_and_rollback_is_not(
    daemon: Daemon, watched_db: str
) -> None:
    """A rolled-back write sends nothing; the next committed one is the next frame."""
    client = await _subscriber(daemon, "example_task")
    with psycopg.connect(watched_db) as conn:
        conn.execute("INSERT INTO example_task (title) VALUES ('rolled back')")
        conn.rollback()
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('kept')")
    frame = await client.expect("event", op="INSERT", count=1)
    with psycopg.connect(watched_db) as conn:
        title = conn.execute("SELECT title FROM example_task WHERE id = %s",
                             (int(frame["pks"][0]),)).fetchone()
    assert title == ("kept",)
    await client.close()


async def test_bulk_update_one_notify_one_event_per_channel(
    daemon: Daemon, watched_db: str
) -> None:
    """10,000 rows in one UPDATE: one NOTIFY, one event per channel, pks null past the cap."""
    execute(watched_db, "INSERT INTO example_task (title, owner_id)"
                        " SELECT 't' || g, g % 2 FROM generate_series(1, 10000) g")
    await caught_up(daemon, watched_db)
    client = await _subscriber(daemon, "example_task", "example_task:owner_id=1")
    legacy = await WsClient.connect(legacy_url(daemon),
                                    additional_headers={"Cookie": "bridge_token="
                                                        + token(1, "example_task")})
    assert await legacy.recv() == "updated"
    await client.sync()
    with psycopg.connect(watched_db, autocommit=True) as listener:
        listener.execute("LISTEN pg_notify_bridge")
        execute(watched_db, "UPDATE example_task SET done = true")
        execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('marker', 5)")
        notifies = list(listener.notifies(timeout=2, stop_after=3))
    assert len(notifies) == 2, notifies  # the bulk UPDATE's one, then the marker's
    table = await client.expect("event", channel="example_task", op="UPDATE", count=10000)
    assert table["pks"] is None
    await client.expect("event", channel="example_task:owner_id=1", op="UPDATE", count=5000,
                        pks=None)
    await client.expect("event", channel="example_task", op="INSERT", count=1)
    assert await legacy.recv() == "updated"
    await legacy.close()
    await client.close()


async def test_channel_column_routes_rows_to_their_owner(daemon: Daemon, watched_db: str) -> None:
    """A change to owner 7's row reaches owner 7's channel and the table's, not owner 8's."""
    seven = await _subscriber(daemon, "example_task:owner_id=7")
    eight = await _subscriber(daemon, "example_task:owner_id=8")
    table = await _subscriber(daemon, "example_task")
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('mine', 7)")
    await seven.expect("event", channel="example_task:owner_id=7", op="INSERT", pks=["1"])
    await table.expect("event", channel="example_task", pks=["1"])
    await eight.sync()  # nothing arrived before the pong
    execute(watched_db, "UPDATE example_task SET owner_id = 8 WHERE id = 1")
    await seven.expect("event", channel="example_task:owner_id=7", op="UPDATE")
    await eight.expect("event", channel="example_task:owner_id=8", op="UPDATE")
    for client in (seven, eight, table):
        await client.close()


async def test_legacy_client_gets_updated_and_no_refetch_storm(
    start_daemon, watched_db: str
) -> None:
    """Connecting sends `updated` to the new client only; a change sends one to each."""
    daemon = await start_daemon(allow_anonymous=("example_task",), legacy_window=0.2)
    first = await WsClient.connect(legacy_url(daemon))
    second = await WsClient.connect(legacy_url(daemon))
    assert await first.recv() == "updated"
    assert await second.recv() == "updated"
    third = await WsClient.connect(legacy_url(daemon))
    assert await third.recv() == "updated"
    await first.ws.send("success")  # ignored
    await first.ws.send("hello?")  # answered with updated
    assert await first.recv() == "updated"
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('x')")
    for client in (first, second, third):
        assert await client.recv() == "updated"
    # The second and third clients' connects did not reach the first: its next frame
    # is the one for the INSERT above, proved by order, not by a timer.
    for client in (first, second, third):
        await client.close()


def _legacy_sent(daemon: Daemon) -> float:
    """Legacy frames the daemon has written (a single legacy client in these tests)."""
    value = daemon.metrics.registry.get_sample_value(
        "bridge_frames_sent_total", {"endpoint": "legacy"})
    return value or 0.0


async def test_legacy_throttle_folds_a_burst(start_daemon, watched_db: str) -> None:
    """Burst 1 (a plain window, docs/protocol.md): fifty changes fold into one `updated`."""
    window = 3.0
    daemon = await start_daemon(allow_anonymous=("example_task",), legacy_window=window,
                                legacy_burst=1)
    client = await WsClient.connect(legacy_url(daemon))
    assert await client.recv() == "updated"  # the one right after connect opens a window
    began = time.monotonic()
    with psycopg.connect(watched_db, autocommit=True) as conn:
        for i in range(50):
            conn.execute("INSERT INTO example_task (title) VALUES (%s)", (f"burst {i}",))
    await caught_up(daemon, watched_db)
    windows = (time.monotonic() - began) // window + 1
    assert _legacy_sent(daemon) <= 1 + windows  # 50 changes, yet at most one frame per window
    assert await client.recv(timeout=15) == "updated"  # the folded one, at the window's end
    assert _legacy_sent(daemon) <= 1 + windows + 1
    await client.close()


async def test_legacy_bucket_starts_with_the_first_load_then_folds_into_one(
    start_daemon, watched_db: str
) -> None:
    """Burst 3, fresh bucket: the connect `updated` spends its one token, so changes right
    after it fold into ONE `updated` when the next token comes (bursts: test_hub.py)."""
    window = 3.0
    daemon = await start_daemon(allow_anonymous=("example_task",), legacy_window=window,
                                legacy_burst=3)
    client = await WsClient.connect(legacy_url(daemon))
    assert await client.recv() == "updated"  # right after connect: it spends the token
    (legacy,) = [c for c in daemon.clients if c.throttle is not None]
    assert legacy.throttle is not None
    with psycopg.connect(watched_db, autocommit=True) as conn:
        for i in range(20):
            conn.execute("INSERT INTO example_task (title) VALUES (%s)", (f"more {i}",))
    await caught_up(daemon, watched_db)
    assert _legacy_sent(daemon) == 1  # nothing sent for them yet: never more than polling
    assert legacy.throttle.pending  # they owe ONE send
    assert await client.recv(timeout=15) == "updated"  # the folded one, at the next token
    assert _legacy_sent(daemon) == 2
    assert not legacy.throttle.pending  # and nothing more is owed: one send, not one per row
    await client.close()


async def test_legacy_without_token_or_anonymous_is_refused(daemon: Daemon) -> None:
    """With neither a token nor an anonymous channel, the legacy handshake gets 401."""
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        await WsClient.connect(legacy_url(daemon))
    assert info.value.response.status_code == 401


async def test_token_in_cookie_and_auth_message(daemon: Daemon, watched_db: str) -> None:
    """A valid token works in the cookie and in `auth`; the cookie opens legacy `/`."""
    cookie = {"Cookie": "bridge_token=" + token(3, "example_task:owner_id=3")}
    v1 = await WsClient.connect(v1_url(daemon), additional_headers=cookie)
    await v1.subscribe("example_task:owner_id=3")
    legacy = await WsClient.connect(legacy_url(daemon), additional_headers=cookie)
    assert await legacy.recv() == "updated"
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('x', 3)")
    await v1.expect("event", channel="example_task:owner_id=3")
    assert await legacy.recv() == "updated"
    await v1.close()
    await legacy.close()


async def test_forged_token_is_refused(daemon: Daemon) -> None:
    """A token signed with another key closes the connection with 4001."""
    client = await WsClient.connect(v1_url(daemon))
    await client.send_json({"type": "auth", "token": token(1, "example_task", key="x" * 50)})
    assert await client.closed_with() == 4001


async def test_channel_outside_grants_is_forbidden(daemon: Daemon) -> None:
    """A channel the token does not grant gets `forbidden`, like one that does not exist."""
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task:owner_id=7"))
    await client.send_json({"type": "subscribe", "channel": "example_task:owner_id=8"})
    await client.expect("error", code="forbidden", channel="example_task:owner_id=8")
    await client.send_json({"type": "subscribe", "channel": "no_such_table"})
    await client.expect("error", code="forbidden", channel="no_such_table")
    await client.sync()
    await client.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"channel": "example_task"}', "bad_message"),
        ('{"type": "subscribe"}', "bad_message"),
        ('{"type": "subscribe", "channel": "Robert\'); DROP TABLE x;--"}', "bad_channel"),
        ("[1, 2, 3]", "bad_message"),
        (b"\x00\x01binary", "bad_message"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_keeps_working(
    daemon: Daemon, watched_db: str, frame: str | bytes, code: str
) -> None:
    """Malformed JSON, unknown type, binary, missing field: an error, then business as usual."""
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task"))
    await client.ws.send(frame)
    await client.expect("error", code=code)
    await client.subscribe("example_task")
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('still works')")
    await client.expect("event", op="INSERT")
    await client.close()


async def test_legacy_channels_keep_row_grants_inside_them(
    start_daemon, watched_db: str
) -> None:
    """--legacy-channels example_task narrows a row grant to that row channel, not to nothing."""
    daemon = await start_daemon(legacy_channels=("example_task",))
    cookie = {"Cookie": "bridge_token=" + token(7, "example_task:owner_id=7")}
    legacy = await WsClient.connect(legacy_url(daemon), additional_headers=cookie)
    assert await legacy.recv() == "updated"
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('mine', 7)")
    assert await legacy.recv() == "updated"
    await legacy.close()


async def test_a_cookie_other_apps_mangle_does_not_hide_ours(daemon: Daemon) -> None:
    """Cookies SimpleCookie gives up on (`a=b c`, JSON values) do not hide bridge_token."""
    header = 'pref={"a":1}; a=b c; bridge_token=' + token(1, "example_task") + "; x=a\\b"
    legacy = await WsClient.connect(legacy_url(daemon), additional_headers={"Cookie": header})
    assert await legacy.recv() == "updated"
    await legacy.close()


async def test_subscribing_without_a_token_is_unauthorized(daemon: Daemon) -> None:
    """Before `auth`, any non-anonymous channel, existing or not, gets `unauthorized`."""
    client = await WsClient.connect(v1_url(daemon))
    for channel in ("example_task", "no_such_table"):
        await client.send_json({"type": "subscribe", "channel": channel})
        await client.expect("error", code="unauthorized", channel=channel)
    await client.auth(token(1, "example_task"))
    await client.subscribe("example_task")
    await client.close()


async def test_probing_channel_names_is_cut_off(start_daemon) -> None:
    """Refused subscribes count as bad messages: probing many names ends with 4029."""
    daemon = await start_daemon(max_bad_messages=5)
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task:owner_id=1"))
    for i in range(50):
        await client.send_json({"type": "subscribe", "channel": f"guess_{i}"})
    assert await client.closed_with() == 4029


async def test_a_backlog_is_stamped_in_bounded_ticks(daemon: Daemon, watched_db: str) -> None:
    """25,000 single-row commits made while no daemon stamps: several ticks, all delivered."""
    client = await _subscriber(daemon, "example_task")
    with psycopg.connect(watched_db) as blocker:
        blocker.execute("SELECT pg_advisory_xact_lock(hashtext('pg_notify_bridge.stamp'))")
        with psycopg.connect(watched_db, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO example_task (title) VALUES (%s)",
                            [(f"t{i}",) for i in range(25000)])
        blocker.rollback()  # the daemon may stamp now
    seen: set[str] = set()
    ticks: set[int] = set()
    while len(seen) < 25000:
        frame = await client.expect("event", op="INSERT", timeout=60)
        seen.update(frame["pks"])
        pos = daemon.hub.parse(frame["position"])
        assert pos is not None
        ticks.add(pos[0])
    assert len(seen) == 25000
    assert len(ticks) >= 3  # at most 10,000 rows a tick
    await client.close()
