"""bridge/positions.py as pure logic: round trips, authentication, opacity, key rotation."""

from __future__ import annotations

import base64
import logging
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.positions import LENGTH, Positions

DB = "0123abcd"
KEY = "position-test-secret-of-sufficient-length-0123"
OLD = "position-test-old-secret-of-sufficient-length-9"
CODEC = Positions([KEY])
BIGINT = (1 << 63) - 1
log_positions = st.tuples(st.integers(0, BIGINT), st.integers(0, BIGINT))


@given(log_positions)
def test_round_trip(pos: tuple[int, int]) -> None:
    """Any (tick, id) in bigint range decodes to itself, from a 40-character URL-safe string."""
    text = CODEC.encode(DB, pos)
    assert len(text) == LENGTH == 40
    assert set(text) <= set(string.ascii_letters + string.digits + "-_")
    assert CODEC.decode(text, DB) == pos


def test_deterministic_and_shared_by_every_daemon_with_the_secret() -> None:
    """One position is one string on every daemon with the same secret (clients test equality)."""
    other_daemon = Positions([KEY])
    assert CODEC.encode(DB, (5, 42)) == other_daemon.encode(DB, (5, 42))
    assert other_daemon.decode(CODEC.encode(DB, (5, 42)), DB) == (5, 42)
    assert CODEC.encode(DB, (5, 42)) != CODEC.encode(DB, (5, 43))


def test_no_log_number_shows_through() -> None:
    """Neighbouring log positions share no visible structure: every bit varies, none is a count.

    A readable encoding (`<db>-<tick>-<id>`, or any fixed layout of the ids) keeps
    bits constant across 2000 neighbours and shows the numbers in the text.
    """
    texts = [CODEC.encode(DB, (7, 1000 + i)) for i in range(2000)]
    assert len(set(texts)) == len(texts)
    assert not any("1000" in t or "2999" in t for t in texts)
    bits = [int.from_bytes(base64.urlsafe_b64decode(t), "big") for t in texts]
    width = 8 * 30
    for bit in range(width):
        ones = sum(b >> bit & 1 for b in bits)
        assert 800 < ones < 1200, f"bit {bit} is set in {ones} of 2000 positions"
    assert sorted(texts) != texts  # string order says nothing about log order


def test_another_database_or_key_is_refused() -> None:
    """A position of another database (db_id), or made with another secret, decodes to None."""
    text = CODEC.encode(DB, (3, 9))
    assert CODEC.decode(text, "ffffffff") is None
    assert Positions(["a-different-secret-of-sufficient-length-012345"]).decode(text, DB) is None


def test_every_edit_is_refused() -> None:
    """Changing any one character of a real position makes it no position at all."""
    text = CODEC.encode(DB, (3, 9))
    for i, char in enumerate(text):
        for other in ("A", "B", "-", "_"):
            if other != char:
                forged = text[:i] + other + text[i + 1:]
                assert CODEC.decode(forged, DB) is None, (i, other)


@pytest.mark.parametrize("text", [
    None, 17, b"x" * 40, "", "0123abcd-1-1", "0123abcd-0-0", "A" * 39, "A" * 41, "A" * 39 + "=",
    "A" * 39 + "+", "A" * 39 + "/", " " + "A" * 39, "A" * 39 + "\n", "é" * 40,
])
def test_malformed_positions_are_none(text: object) -> None:
    """Not a string, the wrong length or alphabet, the old readable form: None, never an error."""
    assert CODEC.decode(text, DB) is None


@given(st.text(max_size=60))
def test_random_strings_are_never_positions(text: str) -> None:
    """A string the daemon did not make is refused (a 112-bit tag: guessing one never works)."""
    assert CODEC.decode(text, DB) is None


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=40, max_size=40))
def test_random_well_shaped_strings_are_never_positions(text: str) -> None:
    """Right length and alphabet is not enough: the tag must match."""
    assert CODEC.decode(text, DB) is None


def test_rotation_reads_old_positions_and_makes_new_ones() -> None:
    """With the old secret as a fallback its positions still resume; new ones use the new key."""
    old = Positions([OLD])
    rotated = Positions([KEY, OLD])
    text = old.encode(DB, (4, 11))
    assert rotated.decode(text, DB) == (4, 11)
    assert rotated.encode(DB, (4, 11)) == CODEC.encode(DB, (4, 11)) != text
    assert Positions([KEY]).decode(text, DB) is None  # after the fallback is dropped: resync


def test_outside_the_log_range_cannot_be_encoded() -> None:
    """A negative or oversized (tick, id) is a bug, refused loudly rather than wrapped."""
    with pytest.raises(ValueError, match="outside the log's range"):
        CODEC.encode(DB, (-1, 0))
    with pytest.raises(ValueError, match="outside the log's range"):
        CODEC.encode(DB, (0, 1 << 64))


def test_no_secret_key_means_a_per_process_key_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No --secret-key: positions stay opaque, keyed per process; the log says what to set."""
    with caplog.at_level(logging.WARNING, logger="bridge.positions"):
        first = Positions.from_config(None)
        second = Positions.from_config(None)
    assert "BRIDGE_SECRET_KEY" in caplog.text
    text = first.encode(DB, (1, 1))
    assert first.decode(text, DB) == (1, 1)
    assert second.decode(text, DB) is None


def test_secret_and_fallbacks_from_config() -> None:
    """from_config keys with --secret-key first and reads --secret-key-fallbacks."""
    codec = Positions.from_config(KEY, (OLD,))
    assert codec.encode(DB, (2, 2)) == CODEC.encode(DB, (2, 2))
    assert codec.decode(Positions([OLD]).encode(DB, (2, 2)), DB) == (2, 2)


def test_no_secret_at_all_is_refused() -> None:
    """Positions() with no secret is a programming error with a clear message."""
    with pytest.raises(ValueError, match="at least one secret"):
        Positions([])
