"""`lockstep serve` over HTTPS: a given certificate, and --lan's generated one with its fingerprint."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from lockstep.server.tls import ensure_certificate, ensure_local_ca, fingerprint
from lockstep_cli import LOCKSTEP
from lockstep_servers import free_port


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `lockstep serve --data <tmp> ARGS...`; every server started is stopped at the end."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        command = [LOCKSTEP, "serve", "--data", str(tmp_path / "d"), *args]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.terminate()
        process.communicate(timeout=10)


def get_json(url: str, cafile: Path) -> dict[str, str]:
    context = ssl.create_default_context(cafile=str(cafile))
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as response:
                value: dict[str, str] = json.loads(response.read())
                return value
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serve_https_with_a_given_certificate(tmp_path: Path, serve) -> None:
    cert, key = ensure_certificate(tmp_path / "tls", ["127.0.0.1"])
    port = free_port()
    serve("--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key))
    info = get_json(f"https://127.0.0.1:{port}/api/info", tmp_path / "tls" / "ca.pem")
    assert info["origin"] == f"https://127.0.0.1:{port}"


def test_serve_lan_makes_a_local_ca_whose_root_phones_download(tmp_path: Path, serve) -> None:
    port, lan_port, ca_port = free_port(), free_port(), free_port()
    process = serve(
        "--port", str(port), "--lan", "--lan-host", "127.0.0.1", "--lan-port", str(lan_port),
        "--lan-ca-port", str(ca_port),
    )  # fmt: skip
    assert process.stdout is not None
    banner = "".join(process.stdout.readline() for _ in range(6))
    tls = tmp_path / "d" / "tls"
    ca, leaf = tls / "ca.pem", tls / "cert.pem"
    assert oct((tls / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
    assert fingerprint(ca) in banner and f":{ca_port}/ca" in banner
    assert re.search(rf"https://[\d.]+:{lan_port}/app", banner)

    # The phone downloads the root over plain HTTP; its SHA-256 is the fingerprint printed.
    info = get_json(f"https://127.0.0.1:{lan_port}/api/info", ca)  # up, and Python's TLS trusts the root
    assert info["origin"].startswith("https://") and info["origin"].endswith(f":{lan_port}")
    with urllib.request.urlopen(f"http://127.0.0.1:{ca_port}/ca.crt", timeout=5) as download:
        root = download.read()
    printed = re.search(r"fingerprint is ([0-9A-F:]{95})", banner)
    assert printed and hashlib.sha256(root).hexdigest().upper() == printed.group(1).replace(":", "")
    assert root == x509.load_pem_x509_certificate(ca.read_bytes()).public_bytes(serialization.Encoding.DER)
    with urllib.request.urlopen(f"http://127.0.0.1:{ca_port}/ca", timeout=5) as response:
        page = response.read().decode()
    assert fingerprint(ca) in page and "<svg" in page  # the fingerprint to compare, a QR to the download
    with pytest.raises(urllib.error.HTTPError) as refused:  # nothing but the root over plain HTTP
        urllib.request.urlopen(f"http://127.0.0.1:{ca_port}/app", timeout=5)
    assert refused.value.code == 404
    refused.value.close()

    # The server's certificate chains to that root, for the address the phone uses (path validation).
    verifier = PolicyBuilder().store(Store([x509.load_pem_x509_certificate(ca.read_bytes())]))
    chain = verifier.build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(
        x509.load_pem_x509_certificate(leaf.read_bytes()), []
    )
    assert len(chain) == 2
    openssl = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), "-purpose", "sslserver", str(leaf)],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert openssl.returncode == 0, openssl.stdout + openssl.stderr
    with pytest.raises(urllib.error.URLError):  # ...and nothing else does
        urllib.request.urlopen(f"https://127.0.0.1:{lan_port}/api/info", timeout=5)


def test_the_local_ca_can_vouch_only_for_local_names(tmp_path: Path) -> None:
    """Its key sits on this machine's disk: a phone that installed the root must never accept it for a
    public site (RFC 5280 name constraints), which openssl and Python's verifier both enforce."""
    ca_path, ca_key_path = ensure_local_ca(tmp_path)
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.example.com")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.example.com")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    path = tmp_path / "forged.pem"
    path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    openssl = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_path), "-purpose", "sslserver", str(path)],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert openssl.returncode != 0 and "permitted subtree violation" in openssl.stderr
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName("bank.example.com"))
    with pytest.raises(VerificationError):
        verifier.verify(forged, [])
    # The same root, made again, is reused; a new address gets a new leaf under the same root.
    assert ensure_local_ca(tmp_path) == (ca_path, ca_key_path)
    first = ensure_certificate(tmp_path, ["127.0.0.1"])[0].read_bytes()
    assert ensure_certificate(tmp_path, ["127.0.0.1"])[0].read_bytes() == first
    assert ensure_certificate(tmp_path, ["127.0.0.1", "192.168.1.20"])[0].read_bytes() != first
    assert ca_path.read_bytes() == ca.public_bytes(serialization.Encoding.PEM)


def test_serve_refuses_half_a_tls_configuration(tmp_path: Path) -> None:
    cert, _ = ensure_certificate(tmp_path / "tls", ["127.0.0.1"])
    result = subprocess.run(
        [LOCKSTEP, "serve", "--tls-cert", str(cert), "--data", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode != 0 and "go together" in result.stderr
