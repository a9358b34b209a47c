"""bridge/session.py as plain rules: auth and its deadline, subscriptions, refusals, closes.

No socket and no database: the peer records what it was asked to send and
close, the hub is a real Hub with watched tables set by hand, and `attach`
subscribes at once (replay.py is tested against real daemons).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bridge import protocol
from bridge.auth import Verifier
from bridge.hub import Hub
from bridge.log import Event
from bridge.metrics import Metrics
from bridge.session import LEGACY, V1, Limits, Rules, Session

KEY = "k" * 50
DB = "0123abcd"


class RecordingPeer:
    """A connection that keeps what it was sent and how it was closed."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    async def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close(self, code: int, reason: str) -> None:
        assert self.closed is None, "closed twice"
        self.closed = (code, reason)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(f) for f in self.frames if f != protocol.LEGACY_UPDATED]


Sess = Session[RecordingPeer]


def make_rules(*, anonymous: frozenset[str] = frozenset(), auth_timeout: float = 60,
               max_subscriptions: int = 3, max_bad_messages: int = 4,
               ) -> tuple[Rules[RecordingPeer], Hub[Sess]]:
    hub: Hub[Sess] = Hub(DB, 100)
    hub.watched = {"tasks": "owner_id", "notes": None}
    hub.start((1, 1))
    connected = asyncio.Event()
    connected.set()

    async def attach(session: Sess, channel: str, since: str | None) -> None:
        session.write(protocol.subscribed_frame(channel, hub.position(hub.cursor)))
        hub.subscribe(session, channel)

    def write(session: Sess, frame: bytes) -> None:
        session.peer.frames.append(frame)

    rules: Rules[RecordingPeer] = Rules(
        hub=hub, verifier=Verifier(KEY), metrics=Metrics(),
        limits=Limits(auth_timeout, max_subscriptions, max_bad_messages, 1.0, 3),
        anonymous=anonymous, write=write, attach=attach, connected=connected)
    return rules, hub


def session(rules: Rules[RecordingPeer], endpoint: str = V1) -> Sess:
    return Session(RecordingPeer(), endpoint, "127.0.0.1", None, rules)


def token(*chans: str) -> str:
    return Verifier(KEY).make(7, chans)


async def test_auth_grants_and_subscribe_goes_through_attach() -> None:
    """A valid token is answered with its channels; a granted subscribe is attached to the hub."""
    rules, hub = make_rules()
    s = session(rules)
    s.start()
    await s.receive(json.dumps({"type": "auth", "token": token("tasks")}))
    await s.receive(json.dumps({"type": "subscribe", "channel": "tasks:owner_id=7"}))
    assert [m["type"] for m in s.peer.messages()] == ["authenticated", "subscribed"]
    assert s.peer.messages()[0]["channels"] == ["tasks"]
    assert hub.subscribers("tasks:owner_id=7") == 1
    assert s.timer is None and s.peer.closed is None


async def test_no_token_in_time_closes_with_4001() -> None:
    """Without a token or anonymous channels, the auth deadline closes the session with 4001."""
    rules, _ = make_rules(auth_timeout=0.01)
    s = session(rules)
    s.start()
    for _ in range(500):
        if s.peer.closed:
            break
        await asyncio.sleep(0.01)
    assert s.peer.closed is not None and s.peer.closed[0] == protocol.CLOSE_UNAUTHORIZED
    assert s.closing


async def test_anonymous_channels_need_no_deadline() -> None:
    """With anonymous channels, no auth deadline is set and those channels subscribe."""
    rules, hub = make_rules(anonymous=frozenset({"notes"}))
    s = session(rules)
    s.start()
    assert s.timer is None
    await s.receive(json.dumps({"type": "subscribe", "channel": "notes"}))
    assert hub.subscribers("notes") == 1


async def test_bad_token_closes_with_4001() -> None:
    """A forged token closes the connection with 4001 and a reason that is not the token."""
    rules, _ = make_rules()
    s = session(rules)
    await s.receive(json.dumps({"type": "auth", "token": Verifier("x" * 50).make(1, ["tasks"])}))
    assert s.peer.closed == (protocol.CLOSE_UNAUTHORIZED, "bad token signature")


async def test_subscribe_before_auth_is_unauthorized_and_not_remembered() -> None:
    """Before a token, any name gets `unauthorized` and counts as bad; it is not "asked again"."""
    rules, hub = make_rules()
    s = session(rules)
    await s.receive(json.dumps({"type": "subscribe", "channel": "tasks"}))
    await s.receive(json.dumps({"type": "subscribe", "channel": "tasks"}))
    assert [m["code"] for m in s.peer.messages()] == [protocol.UNAUTHORIZED] * 2
    assert s.peer.closed is None and not s.refused and len(s.bad) == 2
    assert hub.subscribers("tasks") == 0


async def test_forbidden_twice_closes_with_4003() -> None:
    """A channel outside the grant is refused once with an error, and asking again closes 4003."""
    rules, _ = make_rules()
    s = session(rules)
    await s.receive(json.dumps({"type": "auth", "token": token("notes")}))
    await s.receive(json.dumps({"type": "subscribe", "channel": "tasks"}))
    assert s.peer.messages()[-1]["code"] == protocol.FORBIDDEN
    assert s.peer.closed is None
    await s.receive(json.dumps({"type": "subscribe", "channel": "tasks"}))
    assert s.peer.closed is not None and s.peer.closed[0] == protocol.CLOSE_FORBIDDEN


async def test_unknown_channel_is_refused_like_a_forbidden_one() -> None:
    """A granted name that no watched table has is refused the same way: names are not probed."""
    rules, _ = make_rules()
    s = session(rules)
    await s.receive(json.dumps({"type": "auth", "token": token("missing")}))
    await s.receive(json.dumps({"type": "subscribe", "channel": "missing"}))
    assert s.peer.messages()[-1]["code"] == protocol.FORBIDDEN


async def test_bad_message_budget_closes_with_4029() -> None:
    """Each bad frame gets an error until the budget is spent; the next one closes with 4029."""
    rules, _ = make_rules(max_bad_messages=4)
    s = session(rules)
    for _ in range(4):
        await s.receive("not json")
    assert len(s.peer.messages()) == 4 and s.peer.closed is None
    await s.receive("not json")
    assert s.peer.closed is not None and s.peer.closed[0] == protocol.CLOSE_TOO_MANY_BAD


async def test_subscription_limit_is_an_error_not_a_close() -> None:
    """Past --max-subscriptions a subscribe is answered with an error; the session stays."""
    rules, hub = make_rules(max_subscriptions=1)
    s = session(rules)
    await s.receive(json.dumps({"type": "auth", "token": token("tasks", "notes")}))
    await s.receive(json.dumps({"type": "subscribe", "channel": "tasks"}))
    await s.receive(json.dumps({"type": "subscribe", "channel": "notes"}))
    assert s.peer.messages()[-1]["code"] == protocol.TOO_MANY_SUBSCRIPTIONS
    assert hub.subscribers("notes") == 0 and s.peer.closed is None


async def test_new_token_drops_channels_it_no_longer_grants() -> None:
    """Re-auth with a narrower token unsubscribes what it lost, each with a `forbidden` error."""
    rules, hub = make_rules()
    s = session(rules)
    await s.receive(json.dumps({"type": "auth", "token": token("tasks", "notes")}))
    await s.receive(json.dumps({"type": "subscribe", "channel": "tasks"}))
    await s.receive(json.dumps({"type": "subscribe", "channel": "notes"}))
    await s.receive(json.dumps({"type": "auth", "token": token("notes")}))
    errors = [m for m in s.peer.messages() if m["type"] == "error"]
    assert [(e["code"], e["channel"]) for e in errors] == [(protocol.FORBIDDEN, "tasks")]
    assert hub.subscribers("tasks") == 0 and hub.subscribers("notes") == 1


async def test_unsubscribe_and_ping() -> None:
    """Unsubscribe leaves the hub; ping is answered with pong."""
    rules, hub = make_rules(anonymous=frozenset({"tasks"}))
    s = session(rules)
    await s.receive(json.dumps({"type": "subscribe", "channel": "tasks"}))
    await s.receive(json.dumps({"type": "unsubscribe", "channel": "tasks"}))
    await s.receive(json.dumps({"type": "ping"}))
    assert hub.subscribers("tasks") == 0
    assert s.peer.frames[-1] == protocol.PONG


async def test_too_slow_closes_once_with_4008_and_leaves_the_hub() -> None:
    """A slow client is closed with 4008, unsubscribed at once, and closing twice is a no-op."""
    rules, hub = make_rules(anonymous=frozenset({"tasks"}))
    s = session(rules)
    await s.receive(json.dumps({"type": "subscribe", "channel": "tasks"}))
    s.too_slow()
    s.close(protocol.CLOSE_FORBIDDEN, "second close")
    assert s.peer.closed is not None and s.peer.closed[0] == protocol.CLOSE_TOO_SLOW
    assert hub.subscribers("tasks") == 0 and not s.channels


async def test_legacy_gets_updated_at_start_and_for_anything_but_success() -> None:
    """A legacy session sends `updated` on connect (a token spent) and for any text but success."""
    rules, hub = make_rules()
    s = session(rules, LEGACY)
    s.start(("tasks",))
    assert s.peer.frames == [protocol.LEGACY_UPDATED]
    assert s.throttle is not None and s.throttle.tokens == pytest.approx(0.0)
    await s.receive("success")
    assert len(s.peer.frames) == 1
    await s.receive("hello")
    assert s.peer.frames == [protocol.LEGACY_UPDATED] * 2
    assert s.channels == {"tasks"}
    batch = hub.publish([Event((2, 1), "tasks", "public.tasks", "UPDATE", ["1"], 1)])
    assert batch.legacy == {s}


async def test_forget_leaves_every_channel_and_cancels_the_deadline() -> None:
    """When the connection ends, the session leaves the hub and its timer is cancelled."""
    rules, hub = make_rules(anonymous=frozenset({"notes"}))
    s = session(rules)
    await s.receive(json.dumps({"type": "subscribe", "channel": "notes"}))
    s.timer = asyncio.get_running_loop().call_later(60, s.auth_deadline)
    timer = s.timer
    s.forget()
    assert hub.subscribers("notes") == 0 and timer.cancelled() and s.timer is None
