"""--tls-cert/--tls-key: the daemon serves wss:// itself (nginx is the other way: docs)."""

from __future__ import annotations

import datetime
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

from bridge.server import Daemon
from tests.fix_bridge import WsClient, execute, token
from tests.timing import scaled

pytestmark = pytest.mark.asyncio

StartDaemon = Callable[..., Awaitable[Daemon]]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1: with `cryptography` if installed, else openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=scaled(30))
        return cert, key
    import ipaddress

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


async def test_wss_with_tls_cert_and_key(
    start_daemon: StartDaemon, watched_db: str, tmp_path: Path
) -> None:
    """wss:// on /v1 and legacy `/` with the daemon's own certificate, events and all."""
    cert, key = _self_signed(tmp_path)
    daemon = await start_daemon(tls_cert=str(cert), tls_key=str(key))
    trusting = ssl.create_default_context(cafile=str(cert))
    client = await WsClient.connect(f"wss://127.0.0.1:{daemon.port}/v1", ssl=trusting)
    await client.auth(token(1, "example_task"))
    await client.subscribe("example_task")
    legacy = await WsClient.connect(
        f"wss://127.0.0.1:{daemon.port}/", ssl=trusting,
        additional_headers={"Cookie": "bridge_token=" + token(1, "example_task")})
    assert await legacy.recv() == "updated"
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('over tls')")
    await client.expect("event", op="INSERT")
    assert await legacy.recv() == "updated"
    await client.close()
    await legacy.close()


async def test_tls_port_speaks_only_tls(start_daemon: StartDaemon, tmp_path: Path) -> None:
    """An untrusting client fails verification and plain ws:// gets no WebSocket."""
    cert, key = _self_signed(tmp_path)
    daemon = await start_daemon(tls_cert=str(cert), tls_key=str(key))
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(f"wss://127.0.0.1:{daemon.port}/v1", open_timeout=scaled(10))
    with pytest.raises(InvalidMessage, match="did not receive a valid HTTP response"):
        await connect(f"ws://127.0.0.1:{daemon.port}/v1", open_timeout=scaled(10))
