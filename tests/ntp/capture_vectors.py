"""Regenerate vectors/packets.json by capturing real packets from chrony, NTPsec and ntplib.

Run as root on a machine with chrony and ntpsec-ntpdig: ``.venv/bin/python
tests/ntp/capture_vectors.py``. Everything stays on loopback (ntpdig, which only speaks port 123,
runs inside a network namespace this script creates). The test suite only reads the JSON.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from lockstep.ntp.aio import clock
from lockstep.ntp.timestamps import to_timestamp
from ntp.ntp_peers import free_udp_port, start_chronyd, stop_chronyd

OUT = Path(__file__).parent / "vectors" / "packets.json"
CHRONY = subprocess.run(["chronyd", "--version"], capture_output=True, text=True).stdout.strip()
NTPDIG = (
    "NTPsec ntpdig "
    + subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "ntpsec-ntpdig"], capture_output=True, text=True
    ).stdout
)


def request() -> bytes:
    return bytes([0x23]) + bytes(39) + secrets.token_bytes(8)


def ask(port: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(data, ("127.0.0.1", port))
        return sock.recv(2048)


def listen_once(port: int, start: list[str] | None = None, netns: str | None = None) -> bytes:
    """Bind a UDP socket, optionally start a client process, and return the first datagram."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.settimeout(10)
        process = subprocess.Popen(start) if start else None
        try:
            data, _ = sock.recvfrom(2048)
        finally:
            if process:
                process.kill()
                process.wait()
    return data


NTPD = "/opt/lockstep-peers/ntpsec/usr/sbin/ntpd"


def capture_ntpd_reply() -> dict[str, str]:
    """NTPsec ntpd (orphan mode, stratum 5) answering one request, inside a network namespace."""
    version = subprocess.run([NTPD, "--version"], capture_output=True, text=True).stdout.strip()
    netns = f"lsvec{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "ntp.conf"
        config.write_text(
            "tos orphan 5 orphanwait 0\ndisable ntp kernel\nrestrict default\nrestrict 127.0.0.1\n"
        )
        inside = ["ip", "netns", "exec", netns]
        ntpd = None
        try:
            subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
            ntpd = subprocess.Popen(
                [*inside, "setpriv", "--bounding-set", "-sys_time", NTPD, "-n", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            sent = request()
            script = (
                "import socket,sys,time\n"
                "for _ in range(20):\n"
                " s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(1)\n"
                f" s.sendto(bytes.fromhex('{sent.hex()}'),('127.0.0.1',123))\n"
                " try:\n  d=s.recv(2048)\n except OSError:\n  time.sleep(1);continue\n"
                " if d[1]!=0 and d[1]!=16:\n  print(d.hex());sys.exit()\n"
                " time.sleep(1)\n"
            )
            reply = subprocess.run(
                [*inside, sys.executable, "-c", script], capture_output=True, text=True, check=True
            ).stdout.strip()
        finally:
            if ntpd is not None:
                ntpd.terminate()
                ntpd.wait(10)
            subprocess.run(["ip", "netns", "del", netns], check=True)
    return {
        "name": "ntpsec-ntpd-server-reply",
        "source": f"{version}, orphan mode (tos orphan 5), reply to an RFC 9109 client request",
        "request": sent.hex(),
        "hex": reply,
    }


def main() -> None:
    vectors = []
    with tempfile.TemporaryDirectory() as tmp:
        port = free_udp_port()
        server = start_chronyd(
            Path(tmp) / "server",
            ["local stratum 8", "allow 127.0.0.1"],
            port=port,
        )
        try:
            time.sleep(0.5)
            sent = request()
            vectors.append(
                {
                    "name": "chronyd-server-reply",
                    "source": f"{CHRONY}, local stratum 8, reply to an RFC 9109 client request",
                    "request": sent.hex(),
                    "hex": ask(port, sent).hex(),
                }
            )
        finally:
            stop_chronyd(server)
        # chronyd as a client: capture its request to a fake server.
        fake_port = free_udp_port()
        directory = Path(tmp) / "client"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", fake_port))
            sock.settimeout(10)
            client = start_chronyd(directory, [f"server 127.0.0.1 port {fake_port} iburst"])
            try:
                data, _ = sock.recvfrom(2048)
            finally:
                stop_chronyd(client)
        vectors.append(
            {
                "name": "chronyd-client-request",
                "source": f"{CHRONY}, client request (server ... iburst)",
                "hex": data.hex(),
            }
        )
    # ntpdig speaks to port 123 only: capture its request inside a private network namespace.
    netns = f"lsvec{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        script = (
            "import socket,subprocess;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
            "s.bind(('127.0.0.1',123));s.settimeout(10);"
            "p=subprocess.Popen(['ntpdig','-t','1','127.0.0.1'],stdout=subprocess.DEVNULL,"
            "stderr=subprocess.DEVNULL);print(s.recvfrom(2048)[0].hex());p.kill()"
        )
        captured = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)
    vectors.append({"name": "ntpdig-request", "source": f"{NTPDIG}, `ntpdig 127.0.0.1`", "hex": captured})
    vectors.append(capture_ntpd_reply())
    # ntplib (a Python peer), version 3 request.
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.settimeout(5)
        script = (
            "import ntplib\ntry:\n ntplib.NTPClient().request('127.0.0.1', port="
            f"{port}, version=3, timeout=0.5)\nexcept Exception:\n pass"
        )
        process = subprocess.Popen([sys.executable, "-c", script])
        data, _ = sock.recvfrom(2048)
        process.wait()
    vectors.append(
        {
            "name": "ntplib-request",
            "source": "ntplib 0.4.0, NTPClient().request(version=3)",
            "hex": data.hex(),
        }
    )
    vectors.append(
        {
            "name": "captured-at",
            "source": f"capture time (NTP timestamp) {to_timestamp(clock.now()):#x}",
            "hex": "",
        }
    )
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps([v for v in vectors if v["hex"]], indent=2) + "\n")
    print(f"wrote {len(vectors) - 1} vectors to {OUT}")


if __name__ == "__main__":
    main()
