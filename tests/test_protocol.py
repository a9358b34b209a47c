"""bridge/protocol.py alone: client frames in, messages or ProtocolError out; server frames."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import protocol
from bridge.protocol import Auth, Ping, ProtocolError, Subscribe, Unsubscribe

CODES = {protocol.BAD_MESSAGE, protocol.UNKNOWN_TYPE, protocol.BAD_CHANNEL}


def _error(data: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        protocol.parse(data)
    return info.value


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('{"type": "ping"}', Ping()),
        ('{"type": "auth", "token": "abc:def"}', Auth("abc:def")),
        ('{"type": "subscribe", "channel": "example_task"}', Subscribe("example_task", None)),
        ('{"type": "subscribe", "channel": "example_task:owner_id=7", "since": "p"}',
         Subscribe("example_task:owner_id=7", "p")),
        ('{"type": "subscribe", "channel": "t", "since": null}', Subscribe("t", None)),
        ('{"type": "unsubscribe", "channel": "example_task"}', Unsubscribe("example_task")),
    ],
)
def test_valid_frames_parse(frame: str, message: protocol.Message) -> None:
    """Each client message of docs/protocol.md parses to its dataclass."""
    assert protocol.parse(frame) == message


def test_unknown_fields_are_ignored() -> None:
    """Both sides ignore fields they do not know, so the protocol can grow."""
    frame = {"type": "subscribe", "channel": "t", "v": 2, "extra": {"deep": [1, 2]}}
    assert protocol.parse(json.dumps(frame)) == Subscribe("t", None)
    assert protocol.parse('{"type": "ping", "n": 1e999}') == Ping()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b'{"type": "ping"}', protocol.BAD_MESSAGE),  # binary, even if it holds JSON
        ("", protocol.BAD_MESSAGE),
        ("{not json", protocol.BAD_MESSAGE),
        ("[1, 2]", protocol.BAD_MESSAGE),
        ('"ping"', protocol.BAD_MESSAGE),
        ("null", protocol.BAD_MESSAGE),
        ("12", protocol.BAD_MESSAGE),
        ("{}", protocol.BAD_MESSAGE),
        ('{"type": 1}', protocol.BAD_MESSAGE),
        ('{"type": null}', protocol.BAD_MESSAGE),
        ('{"type": ["ping"]}', protocol.BAD_MESSAGE),
        ('{"type": "PING"}', protocol.UNKNOWN_TYPE),
        ('{"type": "auth"}', protocol.BAD_MESSAGE),
        ('{"type": "auth", "token": ""}', protocol.BAD_MESSAGE),
        ('{"type": "auth", "token": 12}', protocol.BAD_MESSAGE),
        ('{"type": "auth", "token": ["a"]}', protocol.BAD_MESSAGE),
        ('{"type": "subscribe"}', protocol.BAD_MESSAGE),
        ('{"type": "subscribe", "channel": 7}', protocol.BAD_MESSAGE),
        ('{"type": "subscribe", "channel": {"a": 1}}', protocol.BAD_MESSAGE),
        ('{"type": "subscribe", "channel": "t", "since": 5}', protocol.BAD_MESSAGE),
        ('{"type": "subscribe", "channel": "t", "since": ["p"]}', protocol.BAD_MESSAGE),
        ('{"type": "subscribe", "channel": ""}', protocol.BAD_CHANNEL),
        ('{"type": "subscribe", "channel": "Tasks"}', protocol.BAD_CHANNEL),
        ('{"type": "unsubscribe", "channel": null}', protocol.BAD_MESSAGE),
        ('{"type": "unsubscribe", "channel": "a b"}', protocol.BAD_CHANNEL),
    ],
)
def test_bad_frames_raise_protocol_error(frame: str | bytes, code: str) -> None:
    """Wrong type, missing field or wrong field type: a ProtocolError with its code."""
    assert _error(frame).code == code


@pytest.mark.parametrize(
    "channel",
    [
        "example_task'; DROP TABLE bridge.log; --",
        'example_task"; DROP TABLE x',
        "example_task:owner_id=7' OR '1'='1",
        "example_task:owner_id=7;DELETE",
        "example_task:owner_id=",
        "example_task:owner_id=" + "9" * 65,
        "example_task:Owner=7",
        "pg_catalog.pg_authid:x=1 UNION SELECT",
        "example_task\x00",
        "example_task\n",
        "ex\u00e4mple",
        "\ud800",
        "a" * 201,
        "example_task:owner_id=7:x=1",
    ],
)
def test_channel_names_outside_the_grammar_are_bad_channel(channel: str) -> None:
    """Injection strings, NULs, newlines, non-ASCII, overlong: refused before any lookup."""
    error = _error(json.dumps({"type": "subscribe", "channel": channel}))
    assert error.code == protocol.BAD_CHANNEL
    assert len(error.message) < 120  # a bad name is echoed truncated, never in full


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        '{"type": "ping", "n": ' + "9" * 10_000 + "}",
    ],
)
def test_deep_nesting_and_huge_numbers_are_bad_messages(frame: str) -> None:
    """Nesting past the recursion limit and 10,000-digit numbers: bad_message, no crash."""
    assert _error(frame).code == protocol.BAD_MESSAGE


def test_unknown_type_message_is_truncated() -> None:
    """An unknown type is named in the error, cut to 40 characters."""
    error = _error(json.dumps({"type": "x" * 10_000}))
    assert error.code == protocol.UNKNOWN_TYPE
    assert len(error.message) < 80


def test_close_codes_are_the_documented_ones() -> None:
    """The close codes docs/protocol.md promises to clients."""
    assert (protocol.CLOSE_GOING_AWAY, protocol.CLOSE_INVALID_UTF8, protocol.CLOSE_TOO_BIG,
            protocol.CLOSE_UNAUTHORIZED, protocol.CLOSE_FORBIDDEN, protocol.CLOSE_TOO_SLOW,
            protocol.CLOSE_TOO_MANY_BAD) == (1001, 1007, 1009, 4001, 4003, 4008, 4029)


def test_server_frames_are_json_with_a_type() -> None:
    """Every frame builder makes one JSON object with the fields docs/protocol.md lists."""
    frames: list[tuple[bytes, dict[str, Any]]] = [
        (protocol.event_frame("t", "p", "public.t", "UPDATE", ["1", ["2", "a"]], 2),
         {"type": "event", "channel": "t", "position": "p", "table": "public.t", "op": "UPDATE",
          "pks": ["1", ["2", "a"]], "count": 2}),
        (protocol.subscribed_frame("t", "p"), {"type": "subscribed", "channel": "t",
                                               "position": "p"}),
        (protocol.resync_frame("t", "p", "truncate"),
         {"type": "resync", "channel": "t", "position": "p", "reason": "truncate"}),
        (protocol.authenticated_frame(["a", "b"]), {"type": "authenticated",
                                                    "channels": ["a", "b"]}),
        (protocol.error_frame("forbidden", "no", "t"),
         {"type": "error", "code": "forbidden", "message": "no", "channel": "t"}),
        (protocol.error_frame("bad_message", "no"),
         {"type": "error", "code": "bad_message", "message": "no"}),
        (protocol.PONG, {"type": "pong"}),
    ]
    for frame, expected in frames:
        assert json.loads(frame) == expected


def test_frames_keep_non_ascii_as_utf8() -> None:
    """A primary key in any script travels as UTF-8 text, not as escapes."""
    frame = protocol.event_frame("t", "p", "public.t", "INSERT", ["k\u00e4se"], 1)
    assert "k\u00e4se".encode() in frame


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
field_values = json_values | st.sampled_from(["ping", "auth", "subscribe", "unsubscribe",
                                              "example_task", "example_task:owner_id=7"])
messages = st.fixed_dictionaries(
    {}, optional={"type": field_values, "token": field_values, "channel": field_values,
                  "since": field_values},
)


@settings(max_examples=300)
@given(messages | json_values)
def test_any_json_gives_a_message_or_a_protocol_error(value: Any) -> None:
    """Whatever JSON arrives, parse returns a message or raises ProtocolError, nothing else."""
    try:
        result = protocol.parse(json.dumps(value))
    except ProtocolError as exc:
        assert exc.code in CODES
    else:
        assert isinstance(result, (Auth, Subscribe, Unsubscribe, Ping))


@settings(max_examples=200)
@given(st.text() | st.binary())
def test_any_text_or_bytes_gives_a_message_or_a_protocol_error(data: str | bytes) -> None:
    """Random text and binary frames never raise anything but ProtocolError."""
    try:
        protocol.parse(data)
    except ProtocolError as exc:
        assert exc.code in CODES
