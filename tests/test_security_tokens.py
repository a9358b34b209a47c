"""Tokens and grants against a live daemon: who gets in, who gets what, what never leaks."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from django.core import signing
from websockets.exceptions import InvalidStatus

from bridge.auth import SALT
from bridge.config import resolve
from bridge.server import Daemon
from tests.fix_bridge import (
    SECRET,
    WsClient,
    caught_up,
    execute,
    legacy_url,
    token,
    v1_url,
)
from tests.test_auth import OLD, django_dumps

pytestmark = pytest.mark.asyncio

StartDaemon = Callable[..., Awaitable[Daemon]]
NEW = "the-new-secret-key-after-rotation-0123456789abcdef"


def _backdated(age: float, payload: dict[str, Any], key: str = SECRET) -> str:
    """A token Django would have minted `age` seconds ago."""

    class Backdated(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time() - age))

    return Backdated(key=key, salt=SALT, fallback_keys=[]).sign_object(payload)


async def _closed_on_auth(daemon: Daemon, tok: str) -> tuple[int | None, str | None]:
    """Send `auth` with this token; the close code and reason the daemon answers with."""
    client = await WsClient.connect(v1_url(daemon))
    await client.send_json({"type": "auth", "token": tok})
    code = await client.closed_with()
    return code, client.ws.close_reason


async def _legacy_refusal(daemon: Daemon, tok: str) -> tuple[int, str]:
    """Open legacy `/` with this token in the cookie; the HTTP status and body of the refusal."""
    with pytest.raises(InvalidStatus) as info:
        await WsClient.connect(legacy_url(daemon),
                               additional_headers={"Cookie": f"bridge_token={tok}"})
    response = info.value.response
    return response.status_code, response.body.decode()


async def _legacy_accepts(daemon: Daemon, tok: str) -> None:
    client = await WsClient.connect(legacy_url(daemon),
                                    additional_headers={"Cookie": f"bridge_token={tok}"})
    assert await client.recv() == "updated"
    await client.close()


# -- tokens Django mints ---------------------------------------------------------------------


async def test_token_minted_by_django_opens_v1_and_legacy(daemon: Daemon) -> None:
    """signing.dumps with the project's SECRET_KEY and our salt is all a client needs."""
    tok = django_dumps({"t": {"payload": {"u": 7, "ch": ["example_task:owner_id=7"]},
                              "salt": SALT}})["t"]
    client = await WsClient.connect(v1_url(daemon))
    frame = await client.auth(tok)
    assert frame["channels"] == ["example_task:owner_id=7"]
    await client.subscribe("example_task:owner_id=7")
    await client.close()
    await _legacy_accepts(daemon, tok)


async def test_rotation_with_secret_key_fallbacks(start_daemon: StartDaemon) -> None:
    """--secret-key-fallbacks keeps tokens of the old key working; without it they get 4001."""
    old_token = token(7, "example_task", key=OLD)
    rotated = await start_daemon(secret_key=NEW, secret_key_fallbacks=(OLD,))
    client = await WsClient.connect(v1_url(rotated))
    await client.auth(old_token)
    await client.auth(token(7, "example_task", key=NEW))
    await client.close()
    await _legacy_accepts(rotated, old_token)
    strict = await start_daemon(secret_key=NEW)
    assert await _closed_on_auth(strict, old_token) == (4001, "bad token signature")
    assert await _legacy_refusal(strict, old_token) == (401, "bad token signature\n")


async def test_rotation_with_django_settings(
    start_daemon: StartDaemon, tmp_path: Path, watched_db: str
) -> None:
    """--django-settings reads SECRET_KEY_FALLBACKS: a token of the old key still opens /v1."""
    module = f"bridge_rotation_settings_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        f"SECRET_KEY = {NEW!r}\nSECRET_KEY_FALLBACKS = [{OLD!r}]\n")
    sys.path.insert(0, str(tmp_path))
    try:
        config = resolve({"django_settings": module, "database_url": watched_db}, {})
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module, None)
    assert config.secret_key == NEW and config.secret_key_fallbacks == (OLD,)
    daemon = await start_daemon(secret_key=config.secret_key,
                                secret_key_fallbacks=config.secret_key_fallbacks)
    old_token = django_dumps({"t": {"payload": {"u": 1, "ch": ["example_task"]},
                                    "key": OLD, "salt": SALT}})["t"]
    client = await WsClient.connect(v1_url(daemon))
    assert (await client.auth(old_token))["channels"] == ["example_task"]
    await client.close()


# -- refused tokens: 4001 on /v1, 401 on legacy, with a reason -------------------------------


async def test_token_older_than_token_max_age_is_refused(start_daemon: StartDaemon) -> None:
    """--token-max-age 60s: a token minted two minutes ago is expired at /v1 and legacy `/`."""
    daemon = await start_daemon(token_max_age=60.0)
    old = _backdated(120, {"u": 1, "ch": ["example_task"]})
    reason = "token expired: fetch a fresh one"
    assert await _closed_on_auth(daemon, old) == (4001, reason)
    assert await _legacy_refusal(daemon, old) == (401, reason + "\n")
    await _legacy_accepts(daemon, _backdated(30, {"u": 1, "ch": ["example_task"]}))


async def test_token_past_its_exp_is_refused(daemon: Daemon) -> None:
    """An `exp` in the past refuses a token that --token-max-age still allows."""
    expired = token(1, "example_task", ttl=-5)
    reason = "token expired: fetch a fresh one"
    assert await _closed_on_auth(daemon, expired) == (4001, reason)
    assert await _legacy_refusal(daemon, expired) == (401, reason + "\n")


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("forged", "bad token signature"),
        ("wrong_salt", "bad token signature"),
        ("edited", "bad token signature"),
        ("garbage", "bad token signature"),
        ("signed_zlib_garbage", "malformed token"),
        ("signed_not_a_grant", "malformed token: bad channel list"),
    ],
)
async def test_bad_tokens_close_4001_and_refuse_legacy_401(
    daemon: Daemon, kind: str, reason: str
) -> None:
    """Forged, wrong-salt, edited and malformed tokens: 4001 (or 401) with a clear reason."""
    signer = signing.TimestampSigner(key=SECRET, salt=SALT, fallback_keys=[])
    genuine = token(1, "example_task:owner_id=1")
    tok = {
        "forged": token(1, "example_task", key="an-attackers-guess-" * 3),
        "wrong_salt": signing.TimestampSigner(key=SECRET, salt="django.core.signing",
                                              fallback_keys=[]).sign_object(
            {"u": 1, "ch": ["example_task"]}),
        "edited": genuine.replace(genuine.split(":")[0],
                                  signer.sign_object({"u": 1, "ch": ["example_task"]})
                                  .split(":")[0]),
        "garbage": "definitely.not:a:token",
        "signed_zlib_garbage": signer.sign(".bm90IHpsaWI"),
        "signed_not_a_grant": signer.sign_object({"u": 1, "ch": "example_task"}),
    }[kind]
    assert await _closed_on_auth(daemon, tok) == (4001, reason)
    assert await _legacy_refusal(daemon, tok) == (401, reason + "\n")


async def test_v1_client_without_token_is_closed_at_the_auth_deadline(
    start_daemon: StartDaemon,
) -> None:
    """--auth-timeout: no anonymous channel and no auth, then 4001, even while pinging."""
    daemon = await start_daemon(auth_timeout=0.3)
    client = await WsClient.connect(v1_url(daemon))
    await client.sync()  # the connection works meanwhile
    assert await client.closed_with() == 4001
    assert "authenticate first" in (client.ws.close_reason or "")


async def test_authenticated_client_outlives_the_auth_deadline(
    start_daemon: StartDaemon, watched_db: str
) -> None:
    """A client that authenticated in time keeps its connection past the deadline."""
    daemon = await start_daemon(auth_timeout=0.2)
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task"))
    await client.subscribe("example_task")
    late = await WsClient.connect(v1_url(daemon))
    assert await late.closed_with() == 4001  # a later connection's deadline has passed ...
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('after the deadline')")
    await client.expect("event", op="INSERT")  # ... and the first client is still served
    await client.close()


async def test_stale_cookie_on_v1_does_not_block_an_auth_message(daemon: Daemon) -> None:
    """On /v1 a bad cookie is ignored (no grant), so a fresh token in `auth` still works."""
    client = await WsClient.connect(
        v1_url(daemon), additional_headers={"Cookie": "bridge_token=" + token(1, "x", ttl=-1)})
    await client.send_json({"type": "subscribe", "channel": "example_task"})
    await client.expect("error", code="unauthorized", channel="example_task")
    await client.auth(token(1, "example_task"))
    await client.subscribe("example_task")  # asked again, but now granted: no 4003
    await client.close()


# -- tokens never leak -----------------------------------------------------------------------


async def test_tokens_never_appear_in_logs_or_metrics(
    start_daemon: StartDaemon, watched_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, after good, bad, cookie and URL tokens, no log line or metric holds one."""
    caplog.set_level(logging.DEBUG)
    daemon = await start_daemon()
    good = token(7, "example_task:owner_id=7")
    forged = token(7, "example_task", key="forged-key-" * 5)
    expired = token(7, "example_task", ttl=-1)
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(good)
    await client.subscribe("example_task:owner_id=7")
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('x', 7)")
    await client.expect("event")
    await client.close()
    for bad in (forged, expired):
        assert (await _closed_on_auth(daemon, bad))[0] == 4001
        assert (await _legacy_refusal(daemon, bad))[0] == 401
    await _legacy_accepts(daemon, good)
    in_cookie = await WsClient.connect(v1_url(daemon),
                                       additional_headers={"Cookie": f"bridge_token={good}"})
    await in_cookie.subscribe("example_task:owner_id=7")
    await in_cookie.close()
    in_url = await WsClient.connect(v1_url(daemon) + "?token=" + good)  # never do this
    await in_url.close()
    url = f"http://127.0.0.1:{daemon.port}/metrics"
    metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    metrics = metrics.decode()
    assert "bridge_auth_failures" in metrics
    # The daemon's records: everything but this test's own client library.
    records = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert any(r.name == "websockets.server" for r in records)  # captured at all
    assert any(r.name.startswith("bridge") for r in records)
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text}" for r in records)
    for tok in (good, forged, expired):
        signature = tok.rsplit(":", 1)[1]
        for text in (logged, metrics):
            assert tok not in text and signature not in text


# -- channels: no enumeration, 4003 when asked again -----------------------------------------


async def test_ungranted_and_nonexistent_channels_look_the_same(daemon: Daemon) -> None:
    """Both get the same `forbidden` error, so a client cannot probe which tables exist."""
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(7, "example_task:owner_id=7", "secret_table"))
    frames = []
    for channel in ("example_task:owner_id=8", "secret_table", "no_such_table",
                    "example_task:title=x"):
        await client.send_json({"type": "subscribe", "channel": channel})
        frame = await client.expect("error", code="forbidden", channel=channel)
        frames.append({k: v for k, v in frame.items() if k != "channel"})
    assert all(f == frames[0] for f in frames), frames
    await client.subscribe("example_task:owner_id=7")
    await client.close()


@pytest.mark.parametrize("channel", ["example_task:owner_id=8", "no_such_table"])
async def test_asking_again_for_a_forbidden_channel_closes_4003(
    daemon: Daemon, channel: str
) -> None:
    """The second request for a refused channel, granted-elsewhere or missing, gets 4003."""
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(7, "example_task:owner_id=7"))
    await client.send_json({"type": "subscribe", "channel": channel})
    await client.expect("error", code="forbidden")
    await client.send_json({"type": "subscribe", "channel": channel})
    assert await client.closed_with() == 4003


# -- row-level grants ------------------------------------------------------------------------


async def test_row_grant_on_v1_gets_own_rows_only(daemon: Daemon, watched_db: str) -> None:
    """Owner 7's token: owner 8's insert never arrives; owner 7's, committed after it, does."""
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(7, "example_task:owner_id=7"))
    await client.subscribe("example_task:owner_id=7")
    for channel in ("example_task", "example_task:owner_id=8"):
        await client.send_json({"type": "subscribe", "channel": channel})
        await client.expect("error", code="forbidden", channel=channel)
    execute(watched_db, "INSERT INTO example_task (id, title, owner_id) VALUES (1, 'b', 8)")
    execute(watched_db, "INSERT INTO example_task (id, title, owner_id) VALUES (2, 'a', 7)")
    execute(watched_db, "UPDATE example_task SET done = true WHERE owner_id = 8")
    execute(watched_db, "UPDATE example_task SET title = 'mine' WHERE id = 2")
    # Owner 8's changes came first; had any leaked, it would be the next frame.
    await client.expect("event", channel="example_task:owner_id=7", op="INSERT", pks=["2"])
    await client.expect("event", channel="example_task:owner_id=7", op="UPDATE", pks=["2"])
    await client.sync()
    await client.close()


async def test_row_grant_on_legacy_gets_own_rows_only(
    start_daemon: StartDaemon, watched_db: str
) -> None:
    """A legacy page with owner 7's cookie gets `updated` for owner 7, never for owner 8."""
    daemon = await start_daemon(legacy_window=0.0)
    seven = await WsClient.connect(legacy_url(daemon), additional_headers={
        "Cookie": "bridge_token=" + token(7, "example_task:owner_id=7")})
    eight = await WsClient.connect(legacy_url(daemon), additional_headers={
        "Cookie": "bridge_token=" + token(8, "example_task:owner_id=8")})
    assert await seven.recv() == "updated" and await eight.recv() == "updated"
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('b', 8)")
    assert await eight.recv() == "updated"
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('a', 7)")
    assert await seven.recv() == "updated"
    await caught_up(daemon, watched_db)
    await daemon.stop()  # a close frame after everything sent: count what came before it
    rest = [message async for message in seven.ws]
    assert rest == [], "owner 7's page got an `updated` for owner 8's row"
