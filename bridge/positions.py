"""Opaque positions: the strings clients hold in place of a log position (tick, id).

A log position counts every write the database logged, on every channel, so
a client that could read it would count other tables' writes by subscribing
twice, even with a grant for one row. Clients therefore get an encoding
that is

- deterministic: one position is always one string, and equality is the only
  thing a client does with positions;
- authenticated: a string this daemon's keys did not make, or made for
  another database (`db_id`), decodes to None, which the server answers with
  a resync; nobody without the secret can choose where a resume starts;
- opaque: it reveals nothing about (tick, id) beyond equality.

The construction is SIV (deterministic authenticated encryption, the shape
of RFC 5297) with keyed BLAKE2b (RFC 7693) from the standard library as its
pseudo-random function, under two keys derived from the daemon's secret:

    tag      = BLAKE2b(key=k_tag, db_id || tick || id)     14 bytes
    body     = (tick || id) XOR BLAKE2b(key=k_enc, tag)     16 bytes
    position = base64url(tag || body)                       40 characters

tick and id are 8-byte big-endian (PostgreSQL bigints are never negative
here). Decoding recomputes the tag, so a forged or edited string fails;
with db_id inside the tag, positions from another database (or from before
`rotate_db_id`) fail too. Every daemon with the same secret makes and reads
the same strings, so a client resumes on any of them; the old keys of a
rotation (`--secret-key-fallbacks`) are still read, new positions use the
current key. Cost: two BLAKE2b calls on 24 and 14 bytes per position, made
once per event (the hub frames each event once).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable

logger = logging.getLogger("bridge.positions")

Pos = tuple[int, int]

SALT = b"pg_notify_bridge.position.v1"
TAG_BYTES = 14
BODY_BYTES = 16
LENGTH = (TAG_BYTES + BODY_BYTES) * 4 // 3  # 30 bytes: 40 base64 characters, no padding
_MAX = (1 << 64) - 1
_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{{LENGTH}}}")


class _Key:
    """The two BLAKE2b keys derived from one secret, as ready-keyed hash states."""

    __slots__ = ("enc", "tag")

    def __init__(self, secret: bytes):
        root = hmac.digest(secret, SALT, "sha256")
        self.tag = hashlib.blake2b(key=hmac.digest(root, b"tag", "sha256"),
                                   digest_size=TAG_BYTES)
        self.enc = hashlib.blake2b(key=hmac.digest(root, b"enc", "sha256"),
                                   digest_size=BODY_BYTES)

    def tag_of(self, db_id: bytes, plain: bytes) -> bytes:
        h = self.tag.copy()
        h.update(db_id)
        h.update(plain)
        return h.digest()

    def pad_of(self, tag: bytes) -> int:
        h = self.enc.copy()
        h.update(tag)
        return int.from_bytes(h.digest(), "big")


class Positions:
    """Encodes (tick, id) for clients and decodes what they send back.

    The first key makes new positions; all keys (current, then fallbacks)
    are tried when reading one.
    """

    def __init__(self, secrets: Iterable[str | bytes]):
        self._keys = [_Key(s.encode() if isinstance(s, str) else s) for s in secrets]
        if not self._keys:
            raise ValueError("Positions needs at least one secret")

    @classmethod
    def from_config(cls, secret_key: str | None, fallbacks: Iterable[str] = ()) -> Positions:
        """Keys from --secret-key and --secret-key-fallbacks.

        Without a secret key (a daemon with anonymous channels only), the key
        is random for this process: positions stay opaque, but a client that
        resumes on another daemon or after a restart gets a resync instead of
        the events it missed.
        """
        if secret_key:
            return cls([secret_key, *fallbacks])
        logger.warning("no --secret-key: positions are keyed for this process only, so clients"
                       " resync instead of resuming on another daemon or after a restart; set"
                       " BRIDGE_SECRET_KEY (or --django-settings) to resume everywhere")
        return cls.ephemeral()

    @classmethod
    def ephemeral(cls) -> Positions:
        """A random key, for one process (and for tests of pure logic)."""
        return cls([os.urandom(32)])

    def encode(self, db_id: str, pos: Pos) -> str:
        """The string a client gets for `pos` in the database `db_id`."""
        tick, id_ = pos
        if not (0 <= tick <= _MAX and 0 <= id_ <= _MAX):
            raise ValueError(f"position {pos} is outside the log's range")
        plain = (tick << 64 | id_).to_bytes(BODY_BYTES, "big")
        key = self._keys[0]
        tag = key.tag_of(db_id.encode(), plain)
        body = (tick << 64 | id_) ^ key.pad_of(tag)
        return base64.urlsafe_b64encode(tag + body.to_bytes(BODY_BYTES, "big")).decode()

    def decode(self, text: object, db_id: str) -> Pos | None:
        """The (tick, id) of a position made for `db_id` by any of our keys, else None.

        None for anything else: not a string, the wrong shape, an old
        `<db_id>-<tick>-<id>` position, a forged or edited one, one from
        another database, one made with a key this daemon no longer holds.
        """
        if not isinstance(text, str) or not _SHAPE.fullmatch(text):
            return None
        try:
            raw = base64.urlsafe_b64decode(text)
        except (binascii.Error, ValueError):  # pragma: no cover - the shape check excludes it
            return None
        tag, body = raw[:TAG_BYTES], int.from_bytes(raw[TAG_BYTES:], "big")
        database = db_id.encode()
        for key in self._keys:
            value = body ^ key.pad_of(tag)
            if hmac.compare_digest(key.tag_of(database, value.to_bytes(BODY_BYTES, "big")), tag):
                return value >> 64, value & _MAX
        return None
