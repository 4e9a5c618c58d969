"""Capture the NTS-KE requests chrony and NTPsec send, for tests/nts/vectors/ke_records.json.

Run as root on a machine with chrony and the unpacked NTPsec (scripts/ensure-debian-packages.sh):
``.venv/bin/python tests/nts/capture_vectors.py``. A one-shot TLS 1.3 server with ALPN ntske/1
(our ``server_context``) records the first request each client sends and answers it with a
well-formed error so the client gives up. Everything stays on loopback; NTPsec runs inside a
network namespace. Requests carry no secrets (no keys or cookies are sent by an NTS-KE client).
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from OpenSSL import SSL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lockstep.ntp.aio.nts_ke import server_context
from lockstep.ntp.nts.records import Record, RecordReader, encode_records
from ntp.ntp_peers import CHRONYD, running_chronyd
from nts.nts_peers import free_port, make_certificate

NTPD = "/opt/lockstep-peers/ntpsec/usr/sbin/ntpd"
OUT = Path(__file__).parent / "vectors" / "ke_records.json"


def record_one_request(context: SSL.Context, listener: socket.socket, out: list[bytes]) -> None:
    sock, _ = listener.accept()
    sock.settimeout(None)
    conn = SSL.Connection(context, sock)
    conn.set_accept_state()
    conn.do_handshake()
    reader = RecordReader()
    data = b""
    while not reader.complete:
        chunk = conn.recv(4096)
        data += chunk
        reader.feed(chunk)
    out.append(data)
    conn.sendall(encode_records([Record.error(2), Record.end_of_message()]))
    conn.shutdown()
    sock.close()


def capture(pki: Path, start_client: object) -> bytes:
    context = server_context(str(pki / "localhost.crt"), str(pki / "localhost.key"))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    out: list[bytes] = []
    thread = threading.Thread(target=record_one_request, args=(context, listener, out))
    thread.start()
    with start_client(listener.getsockname()[1]):  # type: ignore[operator]
        thread.join(30)
    listener.close()
    return out[0]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp)
        make_certificate(pki)
        version = subprocess.run([CHRONYD, "--version"], capture_output=True, text=True).stdout.split()[3]

        def chrony_client(port: int) -> object:
            lines = [
                f"server 127.0.0.1 port {free_port()} nts ntsport {port} iburst",
                f"ntstrustedcerts {pki}/localhost.crt",
            ]
            return running_chronyd(pki / "chronyd", lines)

        chrony_request = capture(pki, chrony_client)
        vectors = [
            {
                "name": "chrony-ke-request",
                "source": f"chronyd {version} NTS client, `server ... nts`",
                "hex": chrony_request.hex(),
            }
        ]
        namespace = f"lscap{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", namespace], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"], check=True)
            # The capture server must be inside the namespace too: run this script's capture there.
            code = (
                "import sys; sys.path.insert(0, 'tests'); from nts.capture_vectors import ntpsec_capture; "
                f"print(ntpsec_capture({str(pki)!r}))"
            )
            result = subprocess.run(
                ["ip", "netns", "exec", namespace, sys.executable, "-c", code],
                capture_output=True,
                text=True,
                check=True,
            )
            ntpsec_version = subprocess.run(
                [NTPD, "--version"], capture_output=True, text=True
            ).stdout.strip()
            vectors.append(
                {
                    "name": "ntpsec-ke-request",
                    "source": f"{ntpsec_version} NTS client, `server ... nts`",
                    "hex": result.stdout.strip().splitlines()[-1],
                }
            )
        finally:
            subprocess.run(["ip", "netns", "del", namespace], check=False)
    OUT.write_text(json.dumps(vectors, indent=2) + "\n")
    print(f"wrote {len(vectors)} vectors to {OUT}")


def ntpsec_capture(pki_dir: str) -> str:
    import contextlib

    pki = Path(pki_dir)

    @contextlib.contextmanager
    def ntpd_client(port: int):  # type: ignore[no-untyped-def]
        config = pki / "ntp.conf"
        config.write_text(f"server 127.0.0.1:{port} nts ca {pki}/localhost.crt iburst\ndisable ntp kernel\n")
        process = subprocess.Popen(
            ["setpriv", "--bounding-set", "-sys_time", NTPD, "-n", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            process.terminate()
            process.wait(10)

    return capture(pki, ntpd_client).hex()


if __name__ == "__main__":
    main()
