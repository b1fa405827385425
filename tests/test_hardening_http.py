"""The outbound guard under attack, on loopback: addresses, DNS rebinding, credentials
on redirects, origins, trickling servers, DNS failures and leftover downloads
(issue 21 items 7-10 and 14)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpcore
import pytest

from auditor import http
from auditor.errors import FetchError
from auditor.http import (FetchPolicy, Fetcher, check_url, clean_stale_downloads, download,
                          is_public_address, origin)
from tests._site_server import ShopServer, redirect, slow_body


@pytest.fixture
def shop():
    srv = ShopServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def other():
    srv = ShopServer().start()
    yield srv
    srv.stop()


def fetch(url: str, p: FetchPolicy, **kw):
    headers = kw.pop("cred_headers", None)
    auth = kw.pop("auth", None)

    async def go():
        async with Fetcher(p, headers=headers, auth=auth) as f:
            return await f.get(url, **kw)
    return asyncio.run(go())


# ------------------------------------------------------------------ 7: not globally routable

@pytest.mark.parametrize("address", [
    "100.64.0.1", "100.100.100.200",  # shared address space (a cloud metadata address)
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
    "192.0.2.1", "198.18.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255",
    "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "2002:7f00:1::", "ff02::1", "2001:db8::1",
])
def test_addresses_that_are_not_globally_routable_are_refused(address):
    assert not is_public_address(ipaddress.ip_address(address))
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(FetchError, match="not a globally routable address"):
        asyncio.run(check_url(f"http://{host}/x", FetchPolicy()))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111"])
def test_global_addresses_pass(address):
    assert is_public_address(ipaddress.ip_address(address))


def test_shared_address_space_through_a_name_is_refused(monkeypatch):
    async def fake(host, port):
        return ["100.100.100.200"]
    monkeypatch.setattr(http, "_getaddrinfo", fake)
    with pytest.raises(FetchError, match="100.100.100.200, which is not a globally routable"):
        fetch("http://metadata.example/latest", FetchPolicy(retries=0))


# ------------------------------------------------------------------ 8: DNS rebinding

def test_connection_goes_to_the_address_that_was_checked(monkeypatch, shop):
    """A name that answers a public address first and 127.0.0.1 afterwards (rebinding)
    is resolved once per connection; the socket goes to the checked public address."""
    shop.page("/secret", b"internal")
    answers = ["8.8.8.8", "127.0.0.1", "127.0.0.1", "127.0.0.1"]
    asked: list[str] = []
    connected: list[tuple[str, int]] = []

    async def rebinding(host, port):
        asked.append(host)
        return [answers[len(asked) - 1]]

    async def record(self, host, port, timeout=None, local_address=None, socket_options=None):
        connected.append((host, port))
        raise httpcore.ConnectError("unreachable in the test")

    monkeypatch.setattr(http, "_getaddrinfo", rebinding)
    monkeypatch.setattr(http._AsyncioBackend, "connect_tcp", record)
    port = shop.server_address[1]
    with pytest.raises(FetchError):
        fetch(f"http://rebind.example:{port}/secret", FetchPolicy(retries=0))
    assert asked == ["rebind.example"]
    assert connected == [("8.8.8.8", port)]
    assert "/secret" not in shop.hits


def test_pinned_connection_keeps_the_host_header(monkeypatch, shop):
    shop.page("/a", b"ok")

    async def local(host, port):
        return ["127.0.0.1"]
    monkeypatch.setattr(http, "_getaddrinfo", local)
    port = shop.server_address[1]
    r = fetch(f"http://shop.example:{port}/a", FetchPolicy(allow_private=True, retries=0))
    assert r.body == b"ok"
    assert shop.log[-1][1]["Host"] == f"shop.example:{port}"


def test_a_name_rebound_to_loopback_is_refused(monkeypatch, shop):
    shop.page("/a", b"ok")

    async def local(host, port):
        return ["127.0.0.1"]
    monkeypatch.setattr(http, "_getaddrinfo", local)
    with pytest.raises(FetchError, match="127.0.0.1, which is not a globally routable"):
        fetch(f"http://shop.example:{shop.server_address[1]}/a", FetchPolicy(retries=0))
    assert "/a" not in shop.hits


# ------------------------------------------------------------------ 14: DNS failure

def test_dns_failure_is_not_retried(monkeypatch):
    calls = []

    async def nxdomain(host, port):
        calls.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(http, "_getaddrinfo", nxdomain)
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="cannot resolve nowhere.example"):
        fetch("http://nowhere.example/feed.xml", FetchPolicy(retries=3, backoff=5.0))
    assert calls == ["nowhere.example"]
    # One retry would have waited at least backoff x 0.5 = 2.5 s first (the bound leaves
    # a loaded machine seconds of slack and still tells a retry apart).
    assert time.monotonic() - t0 < 2.5


# ------------------------------------------------------------------ 9: credentials, origins

SECRET = {"Authorization": "Bearer s3cret", "X-Api-Key": "k3y"}


def test_credentials_follow_a_same_origin_redirect(shop):
    shop.routes["/r"] = redirect("/final")
    shop.page("/final", b"ok")
    fetch(shop.base + "/r", FetchPolicy(allow_private=True), cred_headers=SECRET)
    final = [h for p, h in shop.log if p == "/final"][-1]
    assert final["Authorization"] == "Bearer s3cret" and final["X-Api-Key"] == "k3y"


def test_credentials_dropped_on_redirect_to_another_port(shop, other):
    """The same host on another port is another origin: no header, no basic auth."""
    other.page("/x", b"elsewhere")
    shop.routes["/r"] = redirect(other.base + "/x")
    p = FetchPolicy(allow_private=True, allow_hosts={shop.base, other.base})
    r = fetch(shop.base + "/r", p, cred_headers=SECRET)
    assert r.body == b"elsewhere"
    first = [h for path, h in shop.log if path == "/r"][-1]
    assert first["Authorization"] == "Bearer s3cret"
    leaked = [h for path, h in other.log if path == "/x"][-1]
    assert "Authorization" not in leaked and "X-Api-Key" not in leaked
    other.page("/y", b"again")
    shop.routes["/r2"] = redirect(other.base + "/y")
    fetch(shop.base + "/r2", p, auth=("user", "pass"))
    assert "Authorization" in [h for path, h in shop.log if path == "/r2"][-1]
    assert "Authorization" not in [h for path, h in other.log if path == "/y"][-1]


def test_credentials_never_follow_a_downgrade_to_plain_http():
    f = Fetcher(FetchPolicy(), headers=SECRET)
    assert f._credentials_for("https://feeds.example/a", "https://feeds.example/b")
    assert not f._credentials_for("https://feeds.example/a", "http://feeds.example/b")
    assert not f._credentials_for("https://feeds.example/a", "https://feeds.example:8443/b")
    assert not f._credentials_for("https://feeds.example/a", "https://cdn.example/b")
    only = Fetcher(FetchPolicy(), headers=SECRET, credential_origins=["https://shop.example/"])
    assert only._credentials_for("https://shop.example/p", "https://shop.example/p")
    assert not only._credentials_for("https://cdn.example/i", "https://cdn.example/i")


def test_allow_hosts_compares_origins(shop, other):
    other.page("/x", b"elsewhere")
    shop.routes["/r"] = redirect(other.base + "/x")
    p = FetchPolicy.from_config({"allow_private": True}, {}, [shop.base + "/feed"])
    with pytest.raises(FetchError, match=r"origin http://127.0.0.1:\d+ .* is not one this"):
        fetch(shop.base + "/r", p)
    assert "/x" not in other.hits


@pytest.mark.parametrize("entry,url,ok", [
    ("https://cdn.example:8443", "https://cdn.example:8443/a.jpg", True),
    ("https://cdn.example:8443", "https://cdn.example/a.jpg", False),
    ("https://cdn.example:8443", "http://cdn.example:8443/a.jpg", False),
    ("cdn.example", "https://cdn.example/a.jpg", True),
    ("cdn.example", "http://cdn.example/a.jpg", True),
    ("cdn.example", "http://cdn.example:8080/a.jpg", False),
    ("cdn.example:8080", "http://cdn.example:8080/a.jpg", True),
    ("http://shop.example", "https://shop.example/p", True),   # upgrade to TLS
    ("https://shop.example", "http://shop.example/p", False),  # never a downgrade
    ("::1", "http://[::1]/x", True),
    ("[::1]:81", "http://[::1]:81/x", True),
    ("[::1]:81", "http://[::1]/x", False),
])
def test_allow_entries(entry, url, ok):
    assert FetchPolicy(allow_hosts={entry}).allows(url) is ok


def test_origin():
    assert origin("https://Shop.Example/a?b") == "https://shop.example:443"
    assert origin("http://shop.example:8080/") == "http://shop.example:8080"
    assert origin("file:///etc/passwd") is None


# ------------------------------------------------------------------ 10: overall deadline

def test_trickling_download_fails_at_the_source_deadline(shop):
    shop.routes["/feed.xml"] = slow_body  # a byte every 50 ms: no read ever times out
    p = FetchPolicy(allow_private=True, timeout=0.5, retries=2, source_deadline=1.0)
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"source_deadline \(1 s\)"):
        download(shop.base + "/feed.xml", p)
    # Without the deadline the trickle alone lasts 3 s (then a retry): 1 s + slack.
    assert time.monotonic() - t0 < 2.8


def test_source_deadline_is_configurable_per_channel():
    p = FetchPolicy.from_config({"source_deadline": 600.0}, {"source_deadline": 5.0})
    assert p.source_deadline == 5.0
    assert FetchPolicy.from_config({"source_deadline": 600.0}).source_deadline == 600.0


# ------------------------------------------------------------------ 14: leftover downloads

def test_download_killed_mid_way_leaves_a_file_the_next_run_removes(shop, tmp_path):
    shop.routes["/feed.xml"] = slow_body
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            from auditor.http import FetchPolicy, download
            download({shop.base + '/feed.xml'!r}, FetchPolicy(allow_private=True))
        """)], env={**os.environ, "TMPDIR": str(tmp_path)}, cwd=Path(__file__).parent.parent)
    deadline = time.monotonic() + 10
    while not list(tmp_path.glob("auditor-dl-*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.kill()
    child.wait()
    left = list(tmp_path.glob("auditor-dl-*.part"))
    assert len(left) == 1 and left[0].name.startswith(f"auditor-dl-{child.pid}-")
    mine = tmp_path / f"auditor-dl-{os.getpid()}-inprogress.part"
    mine.write_bytes(b"x")
    assert clean_stale_downloads(tmp_path, force=True) == left
    assert not left[0].exists() and mine.exists()


# ------------------------------------------------------------------ 8: TLS still names the host

def _self_signed(tmp_path: Path, host: str) -> tuple[Path, Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert_pem, key_pem


def test_pinned_tls_connection_verifies_the_host_name_not_the_address(monkeypatch, tmp_path):
    """The socket goes to the checked address, while SNI and certificate checks still use
    the URL's host: a certificate for shop.example verifies, one for another name fails."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    cert, key = _self_signed(tmp_path, "shop.example")
    seen_sni: list[str | None] = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    srv.socket = sctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        client = ssl.create_default_context(cafile=str(cert))
        monkeypatch.setattr(http, "_ssl_context", lambda: client)

        async def local(host, port):
            return ["127.0.0.1"]
        monkeypatch.setattr(http, "_getaddrinfo", local)
        port = srv.server_address[1]
        r = fetch(f"https://shop.example:{port}/", FetchPolicy(allow_private=True, retries=0))
        assert r.body == b"ok" and seen_sni == ["shop.example"]
        with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
            fetch(f"https://other.example:{port}/", FetchPolicy(allow_private=True, retries=0))
    finally:
        srv.shutdown()
        srv.server_close()
