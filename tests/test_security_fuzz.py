"""Random frames at a live daemon: every one gets an error or a documented close, nothing else.

One daemon takes all the abuse of a test (that is the point), so the
function-scoped fixtures deliberately live across Hypothesis examples.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge.server import Daemon
from tests.fix_bridge import SECRET, WsClient, execute, token, v1_url
from tests.timing import scaled, wait_for

pytestmark = pytest.mark.asyncio

StartDaemon = Callable[..., Awaitable[Daemon]]
FRAME_LIMIT = 16 * 1024
SERVER_TYPES = {"error", "authenticated", "subscribed", "event", "resync", "pong"}
ERROR_CODES = {"bad_message", "unknown_type", "bad_channel", "forbidden",
               "too_many_subscriptions", "unauthorized"}
CLOSE_CODES = {1007, 1009, 4001, 4003, 4029}  # docs/protocol.md's, for what a client can cause

GOOD_TOKEN = token(9, "example_task:owner_id=9")
TOKENS = [GOOD_TOKEN, token(9, "example_task", key="f" * 50), token(9, "example_task", ttl=-1),
          token(9, "Not A Channel"), GOOD_TOKEN[:-3] + "abc", "", "x" * 5000]
CHANNELS = ["example_task", "example_task:owner_id=9", "example_task:owner_id=8",
            "no_such_table", "example_task:title=x", "Bad Name", "example_task\n",
            "x'; DROP TABLE bridge.log; --", "a" * 300]
TYPES = ["auth", "subscribe", "unsubscribe", "ping", "Ping", "event", ""]


@dataclass(frozen=True)
class Frame:
    """One frame to send: JSON-ish text, raw bytes as a text frame (bad UTF-8), or binary."""

    data: str | bytes
    text: bool = True

    def __repr__(self) -> str:  # keep Hypothesis' failure reports readable
        return f"Frame({self.data[:60]!r}{'...' if len(self.data) > 60 else ''}, text={self.text})"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=10,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | json_values},
    optional={"channel": st.sampled_from(CHANNELS) | json_values,
              "token": st.sampled_from(TOKENS) | json_values,
              "since": st.sampled_from(["", "0-0-0", "ffffffff-1-1", "x" * 200]) | json_values},
)
deep = st.integers(1, 7000).flatmap(lambda n: st.sampled_from(
    ["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n,
     '{"type": "subscribe", "channel": "example_task", "x": ' + "[" * n + "]" * n + "}"]))
huge_numbers = st.integers(300, 6000).flatmap(lambda n: st.sampled_from(
    ['{"type": "ping", "n": ' + "9" * n + "}", '{"type": ' + "9" * n + "}",
     '{"type": "subscribe", "channel": "example_task", "since": 1e999999}',
     '{"type": "auth", "token": -' + "1" * n + "}"]))
invalid_utf8 = st.binary(min_size=1, max_size=40).map(lambda b: b"\xff" + b).map(
    lambda b: Frame(b, text=True))
single_frames = st.one_of(
    messages.map(lambda m: Frame(json.dumps(m))),
    json_values.map(lambda v: Frame(json.dumps(v))),
    st.text(max_size=60).map(Frame),
    deep.map(Frame),
    huge_numbers.map(Frame),
    st.binary(max_size=60).map(lambda b: Frame(b, text=False)),
)
# Frames the protocol layer closes on at once come last, so the ones before are answered.
fatal = st.none() | invalid_utf8 | st.just(Frame("x" * (FRAME_LIMIT + 1)))
subscribe_storm = st.integers(200, 3000).map(lambda n: [
    Frame(json.dumps({"type": "subscribe", "channel": f"example_task:owner_id={i}"}))
    for i in range(n)])
frame_lists = st.tuples(st.lists(single_frames, min_size=1, max_size=12), fatal).map(
    lambda pair: pair[0] + ([pair[1]] if pair[1] else [])) | subscribe_storm


async def _abuse(url: str, frames: list[Frame]) -> tuple[list[dict[str, Any]], int | None]:
    """Send the frames then a ping; the answers up to the pong, and the close code if closed."""
    ws: ClientConnection = await connect(url, open_timeout=scaled(10), max_size=None)
    answers: list[dict[str, Any]] = []
    try:
        for frame in [*frames, Frame('{"type": "ping"}')]:
            await ws.send(frame.data, text=frame.text)
        while True:
            data = await asyncio.wait_for(ws.recv(), scaled(20))
            answer = json.loads(data)
            answers.append(answer)
            if answer["type"] == "pong":
                await ws.close()
                return answers, None
    except ConnectionClosed:
        pass
    await asyncio.wait_for(ws.wait_closed(), scaled(10))
    return answers, ws.close_code


def _check_answers(answers: list[dict[str, Any]], code: int | None) -> None:
    for answer in answers:
        assert answer["type"] in SERVER_TYPES, answer
        if answer["type"] == "error":
            assert answer["code"] in ERROR_CODES, answer
            assert isinstance(answer["message"], str)
    assert code is None or code in CLOSE_CODES, code


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """The daemon logged no traceback and no error (its records, at DEBUG, since the start)."""
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR
           or "Traceback" in r.getMessage()]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]
    assert any(r.name == "websockets.server" for r in caplog.records)  # the capture worked


class Bystander:
    """A well-behaved subscriber beside the fuzzing: each marker row must reach it, in order."""

    def __init__(self, client: WsClient, url: str):
        self.client, self.url, self.rows = client, url, 0

    async def still_served(self) -> None:
        execute(self.url, "INSERT INTO example_task (title, owner_id) VALUES ('marker', 1)")
        self.rows += 1
        await self.client.expect("event", channel="example_task", pks=[str(self.rows)])


@pytest.fixture
async def target(start_daemon: StartDaemon, watched_db: str,
                 caplog: pytest.LogCaptureFixture) -> tuple[Daemon, Bystander]:
    """A daemon with small limits (so floods reach them) and a bystander subscribed to it."""
    # Quiet our own client library first: set_level also sets the handler's level.
    caplog.set_level(logging.WARNING, logger="websockets.client")
    caplog.set_level(logging.DEBUG)
    daemon = await start_daemon(allow_anonymous=("example_task",), max_frame_size=FRAME_LIMIT,
                                max_bad_messages=8, secret_key=SECRET)
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task"))
    await client.subscribe("example_task")
    return daemon, Bystander(client, watched_db)


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frames=frame_lists)
async def test_random_frames_get_errors_or_documented_closes(
    target: tuple[Daemon, Bystander], caplog: pytest.LogCaptureFixture, frames: list[Frame]
) -> None:
    """Random JSON, deep nesting, huge numbers, bad UTF-8, binary, wrong field types, floods:
    every answer is a protocol frame and every close a documented code; a bystander is served."""
    daemon, bystander = target
    answers, code = await _abuse(v1_url(daemon), frames)
    event(f"closed {code}" if code else "answered up to the pong")
    _check_answers(answers, code)
    await bystander.still_served()
    _no_tracebacks(caplog)


async def test_fuzzing_leaves_no_traceback_and_no_leftovers(
    target: tuple[Daemon, Bystander], caplog: pytest.LogCaptureFixture
) -> None:
    """A fixed tour of the worst frames: documented closes, a clean log, only the bystander left."""
    daemon, bystander = target
    url = v1_url(daemon)
    cases: list[tuple[list[Frame], int | None]] = [
        ([Frame(b"\xff\xfe", text=True)], 1007),
        ([Frame("x" * (FRAME_LIMIT + 1))], 1009),
        ([Frame(json.dumps({"type": "auth", "token": TOKENS[1]}))], 4001),
        ([Frame(json.dumps({"type": "auth", "token": GOOD_TOKEN}))]
         + [Frame(json.dumps({"type": "subscribe", "channel": "no_such_table"}))] * 2, 4003),
        # Without a token the same name is `unauthorized` (not enumerable), counted as bad.
        ([Frame(json.dumps({"type": "subscribe", "channel": "no_such_table"}))] * 2, None),
        ([Frame("[" * 7000 + "]" * 7000)] * 9, 4029),
        ([Frame(b"\x00", text=False)] * 3 + [Frame('{"type": "ping"}')], None),
        ([Frame(json.dumps({"type": "subscribe", "channel": f"example_task:owner_id={i}"}))
          for i in range(3000)], None),
    ]
    for frames, expected in cases:
        answers, code = await _abuse(url, frames)
        _check_answers(answers, code)
        assert code == expected, (frames[0], code)
        await bystander.still_served()
    storm = answers
    assert sum(a["type"] == "subscribed" for a in storm) == daemon.config.max_subscriptions
    assert sum(a.get("code") == "too_many_subscriptions" for a in storm) == 3000 - 100
    await wait_for(lambda: len(daemon.clients) == 1, what="fuzz clients to be forgotten")
    assert daemon.hub.channel_counts() == {"example_task": 1}
    _no_tracebacks(caplog)


# -- the HTTP layer: what reaches the daemon before any WebSocket ------------------------------

PATHS = ["/healthz", "/readyz", "/metrics", "/v1", "/", "//x/metrics", "http://x/healthz",
         "/nope", "*", "/v1?x=1", "/%00", "/" + "a" * 5000]
METHODS = ["GET", "HEAD", "POST", "OPTIONS", "GE T", "get", ""]
HEADER_LINES = ["Host: 127.0.0.1", "Host: evil.example", "Upgrade: websocket",
                "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13", "Origin: http://evil.example",
                "Content-Length: 5", "Transfer-Encoding: chunked", "X: " + "y" * 9000,
                "no colon here", "Cookie: bridge_token=abc"]
http_requests = st.builds(
    lambda method, path, version, headers, tail: (
        f"{method} {path} {version}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    ).encode("latin-1") + tail,
    st.sampled_from(METHODS), st.sampled_from(PATHS),
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "FOO"]),
    st.lists(st.sampled_from(HEADER_LINES), max_size=6),
    st.one_of(st.just(b""), st.binary(max_size=300),
              st.just(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
              st.just(b"\x81\x85" + b"\x00" * 9)),
)


async def _raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, half-close, and read what comes back until the daemon closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), scaled(15))
    except (ConnectionError, asyncio.TimeoutError):
        return b""
    finally:
        writer.close()


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(requests=st.lists(http_requests, min_size=1, max_size=3))
async def test_random_http_requests_get_an_answer_or_a_quiet_close(
    target: tuple[Daemon, Bystander], caplog: pytest.LogCaptureFixture, requests: list[bytes]
) -> None:
    """Random request lines, headers, pipelined requests and trailing bytes: no traceback."""
    daemon, _ = target
    answer = await _raw_exchange(daemon.port, b"".join(requests))
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:80]
    _no_tracebacks(caplog)


async def test_pipelined_plain_requests_log_no_traceback(
    target: tuple[Daemon, Bystander], caplog: pytest.LogCaptureFixture
) -> None:
    """A plain GET followed by more bytes (pipelining, garbage), 40 times: never an ERROR."""
    daemon, bystander = target
    for i in range(40):
        tail = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" if i % 2 else b"\x00garbage"
        answer = await _raw_exchange(
            daemon.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + tail)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    await bystander.still_served()
    _no_tracebacks(caplog)
