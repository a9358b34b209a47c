"""bridge/hub.py as plain state: publish, replay from memory, remembers(), TRUNCATE, Throttle.

No socket and no database: clients are strings, events are built by hand.
"""

from __future__ import annotations

import json
import random
from typing import Any

from bridge.hub import Hub, Throttle
from bridge.log import Event, Pos
from bridge.positions import Positions

DB = "0123abcd"
CODEC = Positions(["hub-test-secret"])
TABLE = "public.example_task"


def ev(tick: int, id_: int, channel: str = "tasks", op: str = "UPDATE",
       pks: list[Any] | None = None) -> Event:
    return Event((tick, id_), channel, TABLE, op, pks if pks is not None else [str(id_)], 1)


def hub(memory: int = 100, cursor: Pos = (0, 0), recent: list[Event] | None = None) -> Hub[str]:
    h: Hub[str] = Hub(DB, memory, CODEC)
    h.watched = {"tasks": "owner_id", "notes": None}
    h.start(cursor, recent or [])
    return h


def at(tick: int, id_: int) -> str:
    """The string a client sees for the log position (tick, id)."""
    return CODEC.encode(DB, (tick, id_))


def decode(frame: bytes) -> dict[str, Any]:
    return json.loads(frame)


def positions(frames: list[bytes]) -> list[str]:
    return [decode(f)["position"] for f in frames]


def test_publish_gives_each_frame_once_to_its_channel_subscribers() -> None:
    """One Delivery per event: one serialized frame, every subscriber of that channel, no other."""
    h = hub()
    h.subscribe("a", "tasks")
    h.subscribe("b", "tasks")
    h.subscribe("c", "notes")
    batch = h.publish([ev(1, 1), ev(1, 2, "tasks:owner_id=7")])
    assert batch.events == 2
    assert len(batch.deliveries) == 1
    delivery = batch.deliveries[0]
    assert sorted(delivery.clients) == ["a", "b"]
    frame = decode(delivery.frame)
    assert frame == {"type": "event", "channel": "tasks", "position": at(1, 1),
                     "table": TABLE, "op": "UPDATE", "pks": ["1"], "count": 1}
    assert h.cursor == (1, 2)


def test_publish_skips_events_at_or_before_the_cursor() -> None:
    """A re-read of rows already published (a reconnect, an overlap) never duplicates them."""
    h = hub()
    h.subscribe("a", "tasks")
    assert h.publish([ev(1, 1), ev(1, 2)]).events == 2
    again = h.publish([ev(1, 1), ev(1, 2), ev(2, 3)])
    assert again.events == 1
    assert [positions([d.frame]) for d in again.deliveries] == [[at(2, 3)]]


def test_legacy_subscribers_are_flagged_once_per_batch() -> None:
    """A legacy client owes one `updated` per batch, however many of its events the batch has."""
    h = hub()
    h.subscribe_legacy("old", ["tasks"])
    batch = h.publish([ev(1, 1), ev(1, 2), ev(2, 3, "notes")])
    assert batch.legacy == {"old"}
    assert batch.deliveries == []


def test_replay_from_memory_gives_the_channel_after_since_in_order() -> None:
    """replay(channel, since) is that channel's frames strictly after since, oldest first."""
    h = hub()
    h.publish([ev(1, 1), ev(1, 2, "notes"), ev(2, 3), ev(3, 4), ev(3, 5, "notes")])
    assert positions(h.replay("tasks", (1, 1))) == [at(2, 3), at(3, 4)]
    assert positions(h.replay("notes", (0, 0))) == [at(1, 2), at(3, 5)]
    assert h.replay("tasks", h.cursor) == []


def test_replay_frames_are_the_live_frames() -> None:
    """A replayed event is byte for byte the frame live subscribers got."""
    h = hub()
    h.subscribe("a", "tasks")
    live = h.publish([ev(1, 1)]).deliveries[0].frame
    assert h.replay("tasks", (0, 0)) == [live]


def test_remembers_from_the_oldest_event_kept() -> None:
    """Positions from the first event in memory on are served from memory, older ones are not."""
    recent = [ev(5, 10), ev(6, 11), ev(7, 12)]
    h = hub(cursor=(7, 12), recent=recent)
    assert h.remembers((5, 10))
    assert h.remembers((6, 0))
    assert not h.remembers((5, 9))
    assert not h.remembers((0, 0))
    assert positions(h.replay("tasks", (5, 10))) == [at(6, 11), at(7, 12)]


def test_start_keeps_only_events_up_to_the_cursor() -> None:
    """Rows stamped after the head was read are left for the reader, never replayed early."""
    h = hub(cursor=(2, 2), recent=[ev(1, 1), ev(2, 2), ev(3, 3)])
    assert positions(h.replay("tasks", (0, 0))) == [at(1, 1), at(2, 2)]
    assert h.publish([ev(3, 3)]).events == 1


def test_memory_is_bounded_and_forgets_the_oldest() -> None:
    """With memory for 2 events, publishing 6 keeps at most 4 and moves the floor past the rest."""
    h = hub(memory=2)
    h.publish([ev(i, i) for i in range(1, 7)])
    assert not h.remembers((1, 1))
    assert h.remembers((5, 5))
    assert positions(h.replay("tasks", (5, 5))) == [at(6, 6)]
    assert len(h.replay("tasks", (0, 0))) <= 4


def test_without_memory_only_the_cursor_is_remembered() -> None:
    """memory_events=0: every resume behind the cursor reads the log."""
    h = hub(memory=0)
    h.publish([ev(1, 1), ev(2, 2)])
    assert h.remembers((2, 2))
    assert not h.remembers((1, 1))


def test_forget_through_drops_pruned_ticks() -> None:
    """After the log pruned tick 2, positions in ticks up to 2 are no longer served from memory."""
    h = hub()
    h.publish([ev(1, 1), ev(2, 2), ev(2, 3), ev(3, 4)])
    h.forget_through(2)
    assert not h.remembers((2, 3))
    assert not h.remembers((1, 1))
    assert h.remembers((3, 0))
    assert positions(h.replay("tasks", (3, 0))) == [at(3, 4)]
    h.forget_through(1)  # an older mark never moves the floor back
    assert not h.remembers((2, 3))


def test_forget_through_zero_forgets_nothing() -> None:
    """pruned_through 0 means nothing was pruned: the empty log's head (0, 0) stays remembered."""
    h = hub()
    h.forget_through(0)
    assert h.remembers((0, 0))


def test_truncate_is_an_event_on_the_table_and_a_resync_on_row_channels() -> None:
    """TRUNCATE names no row: table subscribers get the event, row channel subscribers a resync."""
    h = hub()
    h.subscribe("table", "tasks")
    h.subscribe("row", "tasks:owner_id=7")
    h.subscribe_legacy("old", ["tasks:owner_id=8"])
    batch = h.publish([ev(4, 9, op="TRUNCATE", pks=[])])
    frames = {tuple(d.clients): decode(d.frame) for d in batch.deliveries}
    assert frames[("table",)]["type"] == "event"
    assert frames[("row",)] == {"type": "resync", "channel": "tasks:owner_id=7",
                                "position": at(4, 9), "reason": "truncate"}
    assert batch.legacy == {"old"}
    replayed = [decode(f) for f in h.replay("tasks:owner_id=7", (0, 0))]
    assert [(f["type"], f["reason"]) for f in replayed] == [("resync", "truncate")]


def test_unsubscribe_stops_delivery_and_truncate_resyncs() -> None:
    """After unsubscribe, neither events nor a TRUNCATE's resync reach the client."""
    h = hub()
    h.subscribe("a", "tasks:owner_id=7")
    h.unsubscribe("a", "tasks:owner_id=7")
    batch = h.publish([ev(1, 1, "tasks:owner_id=7"), ev(2, 2, op="TRUNCATE")])
    assert batch.deliveries == []
    assert h.channel_counts() == {}


def test_resync_all_moves_the_cursor_and_tells_every_subscriber() -> None:
    """A gap too large to replay: each subscribed channel gets one resync at the new cursor."""
    h = hub()
    h.subscribe("a", "tasks")
    h.subscribe("b", "notes")
    h.subscribe_legacy("old", ["tasks"])
    h.publish([ev(1, 1)])
    batch = h.resync_all((9, 50), "gap")
    sent = sorted((d.clients[0], decode(d.frame)["type"], decode(d.frame)["position"])
                  for d in batch.deliveries)
    assert sent == [("a", "resync", at(9, 50)), ("b", "resync", at(9, 50))]
    assert batch.legacy == {"old"}
    assert h.cursor == (9, 50)
    assert not h.remembers((1, 1))


def test_exists_knows_tables_and_their_channel_column() -> None:
    """A channel exists when its table is watched and its column is the table's channel column."""
    h = hub()
    assert h.exists("tasks") and h.exists("tasks:owner_id=7") and h.exists("notes")
    assert not h.exists("tasks:done=true")
    assert not h.exists("notes:owner_id=7")
    assert not h.exists("secrets")


def test_throttle_burst_one_is_the_old_leading_edge_window() -> None:
    """burst=1: the first hit sends now; hits within the window fold into one at its end."""
    t = Throttle(1.0, burst=1)
    assert t.hit(100.0) == 0.0
    t.fired(100.0)
    assert t.hit(100.25) == 0.75
    assert t.hit(100.5) is None
    t.fired(101.0)
    assert t.hit(101.5) == 0.5
    t.fired(102.0)
    assert t.hit(103.5) == 0.0


def test_throttle_sends_a_burst_at_once_then_folds_into_one_at_the_next_token() -> None:
    """burst=3, after a quiet spell: three changes go out at once; the rest fold into one."""
    t = Throttle(1.0, burst=3)
    t.fired(97.0)  # the first load spends the fresh bucket's one token
    for _ in range(3):  # three quiet windows saved three sends
        assert t.hit(100.0) == 0.0
        t.fired(100.0)
    assert t.hit(100.0) == 1.0  # no token left: one send owed, when the next one comes
    assert [t.hit(100.0 + i / 10) for i in range(1, 10)] == [None] * 9  # folded into it
    t.fired(101.0)
    assert t.hit(101.0) == 1.0  # that send spent the token that came back


def test_a_fresh_throttle_holds_one_send_then_saves_one_per_window() -> None:
    """The first load spends the only token; a change right after it waits a window."""
    t = Throttle(2.0, burst=3)
    assert t.hit(10.0) == 0.0
    t.fired(10.0)
    assert t.hit(11.0) == 1.0  # half a token back: the other half takes one more second
    t.fired(12.0)
    assert t.hit(16.0) == 0.0  # two tokens back
    t.fired(16.0)
    t.fired(16.0)
    assert t.hit(16.0) == 2.0  # both spent
    t.fired(18.0)
    for _ in range(3):  # a long quiet spell refills to the burst, not beyond
        assert t.hit(1000.0) == 0.0
        t.fired(1000.0)
    assert t.hit(1000.0) == 2.0


def _drive(t: Throttle, hits: list[float]) -> list[float]:
    """Feed change times to `t` the way the daemon does; the times sends went out."""
    sent: list[float] = []
    due: float | None = None
    for now in [*hits, float("inf")]:
        if due is not None and now >= due:
            t.fired(due)
            sent.append(due)
            due = None
        if now == float("inf"):
            break
        delay = t.hit(now)
        if delay == 0.0:
            t.fired(now)
            sent.append(now)
        elif delay is not None:
            due = now + delay
    return sent


def test_throttle_never_sends_more_than_polling_from_the_first_load() -> None:
    """Random changes, 0.1 to 50 per window: sends since the first never outnumber polling's
    1 + t/window, and over any span at most burst + span/window go out."""
    rng = random.Random(7)
    for rate in (0.1, 1.0, 10.0, 50.0):
        hits, now = [], 0.0
        while now < 120:
            hits.append(now)
            now += rng.expovariate(rate)
        sent = _drive(Throttle(1.0, burst=3), hits)
        assert sent and sent[0] == 0.0
        for i, at in enumerate(sent):
            assert i + 1 <= 1 + at + 1e-9  # polling once a second from 0 made 1 + at
            later = [x for x in sent[i:] if x <= at + 5]
            assert len(later) <= 3 + 5 + 1e-9
        assert len(sent) >= min(len(hits), 120) * 0.5  # and it does send: no starving


def test_throttle_defer_keeps_one_owed_send_and_spends_one_token() -> None:
    """A send that could not go out stays owed (hits fold into it) and costs one token, once."""
    t = Throttle(1.0, burst=2)
    assert t.hit(0.0) == 0.0
    t.defer()  # the client still had unsent bytes: nothing went out
    assert t.hit(0.1) is None and t.hit(0.5) is None  # folded into the owed send
    t.fired(1.0)  # it went out a window later
    assert t.hit(1.0) == 0.0  # one token spent by it, one left: not paid for twice
    t.fired(1.0)
    assert t.hit(1.0) == 1.0


def test_throttle_with_no_window_never_holds_a_send() -> None:
    """--legacy-window 0: every change sends at once, however many came before."""
    t = Throttle(0.0, burst=1)
    for _ in range(5):
        assert t.hit(5.0) == 0.0
        t.fired(5.0)
