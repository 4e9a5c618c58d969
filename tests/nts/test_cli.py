"""``lockstep ntp serve --nts-cert/--nts-key``, ``query --nts`` and ``monitor --nts`` as processes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ntp.ntp_peers import lockstep_ntp, lockstep_serve
from nts.nts_peers import Certificate, free_port, make_certificate


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Certificate, int]]:
    certificate = make_certificate(tmp_path_factory.mktemp("pki"))
    ke_port = free_port(socket.SOCK_STREAM)
    with lockstep_serve(
        "--port", str(free_port()), "--local-stratum", "3", "--nts-cert", str(certificate.cert),
        "--nts-key", str(certificate.key), "--nts-port", str(ke_port),
    ) as process:  # fmt: skip
        assert process.stdout is not None
        assert f"serving NTS-KE on 127.0.0.1 port {ke_port}" in process.stdout.readline()
        yield certificate, ke_port
    assert process.returncode == 0


def test_query_nts_text_and_json(served: tuple[Certificate, int]) -> None:
    certificate, ke_port = served
    result = lockstep_ntp("query", "--nts", f"localhost:{ke_port}", "--ca", str(certificate.cert))
    assert result.returncode == 0, result.stderr
    assert "authenticated   NTS (RFC 8915, AEAD_AES_SIV_CMAC_256)" in result.stdout
    assert "stratum         3" in result.stdout
    result = lockstep_ntp("query", "--nts", f"127.0.0.1:{ke_port}", "--ca", str(certificate.cert), "--json")
    answer = json.loads(result.stdout)
    assert answer["authenticated"] == "NTS" and answer["stratum"] == 3 and abs(answer["offset"]) < 0.01


def test_query_nts_refuses_an_untrusted_server(served: tuple[Certificate, int], tmp_path: Path) -> None:
    _, ke_port = served
    other = make_certificate(tmp_path)
    result = lockstep_ntp("query", "--nts", f"127.0.0.1:{ke_port}", "--ca", str(other.cert))
    assert result.returncode != 0
    assert "TLS handshake with 127.0.0.1 port" in result.stderr
    assert "certificate verify failed" in result.stderr
    result = lockstep_ntp("query", "--nts", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}")
    assert result.returncode != 0 and "cannot connect to NTS-KE server" in result.stderr


def test_monitor_nts(served: tuple[Certificate, int]) -> None:
    certificate, ke_port = served
    result = lockstep_ntp(
        "monitor", "--nts", f"127.0.0.1:{ke_port}", "--ca", str(certificate.cert),
        "--minpoll", "1", "--maxpoll", "1", "--duration", "9", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["system_peer"] == f"127.0.0.1:{ke_port}"
    assert last["sources"][0]["state"] == "*" and abs(last["offset"]) < 0.01


def test_serve_needs_both_nts_files(tmp_path: Path) -> None:
    result = lockstep_ntp("serve", "--port", str(free_port()), "--nts-cert", str(tmp_path / "x.crt"))
    assert result.returncode != 0 and "needs both --nts-cert and --nts-key" in result.stderr
    result = lockstep_ntp(
        "serve",
        "--port",
        str(free_port()),
        "--nts-cert",
        str(tmp_path / "x"),
        "--nts-key",
        str(tmp_path / "y"),
    )
    assert result.returncode != 0 and "cannot use --nts-cert/--nts-key" in result.stderr


def test_secret_file_is_made_private_and_reused(tmp_path: Path) -> None:
    from lockstep.ntp.aio.nts_ke import load_or_create_secret

    path = tmp_path / "nts.secret"
    secret = load_or_create_secret(str(path))
    assert len(secret) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(str(path)) == secret
    path.chmod(0o644)
    with pytest.raises(ValueError, match="readable by group or others"):
        load_or_create_secret(str(path))
    certificate = make_certificate(tmp_path / "pki")
    result = lockstep_ntp(
        "serve", "--port", str(free_port()), "--nts-cert", str(certificate.cert),
        "--nts-key", str(certificate.key), "--nts-secret", str(path),
    )  # fmt: skip
    assert result.returncode != 0 and "chmod 600" in result.stderr
