"""NTPsec's ntpd as an NTS client of our server (NTS-KE, cookies, authenticated NTP).

NTPsec's ntpd only speaks from port 123 and Debian will not install it next to chrony, so
scripts/ensure-debian-packages.sh unpacks it under /opt/lockstep-peers/ntpsec, and this test runs
ntpd and our server inside a network namespace it creates (loopback only). ntpd runs with
``disable ntp kernel`` and without CAP_SYS_TIME (``setpriv --bounding-set -sys_time``), so it
can never adjust the host's clock.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ntp.ntp_peers import NTPQ, lockstep_serve, network_namespace, start_ntpd, stop_process
from nts.nts_peers import make_certificate

pytestmark = pytest.mark.interop


@pytest.fixture
def namespace() -> Iterator[list[str]]:
    with network_namespace("lsnts") as sandbox:
        if sandbox is None:
            pytest.skip("needs `ip netns` (root)")
        yield sandbox


def test_ntpsec_ntpd_authenticates_with_our_server(namespace: list[str], tmp_path: Path) -> None:
    certificate = make_certificate(tmp_path / "pki")
    serve = ("--port", "12123", "--local-stratum", "4", "--nts-port", "14460")
    nts_files = ("--nts-cert", str(certificate.cert), "--nts-key", str(certificate.key))
    with lockstep_serve(*serve, *nts_files, prefix=tuple(namespace)) as server:
        assert server.stdout is not None
        assert "serving NTS-KE" in server.stdout.readline()
        ntpd: subprocess.Popen[str] | None = None
        try:
            config = tmp_path / "ntp.conf"
            log = tmp_path / "ntpd.log"
            config.write_text(
                f"server 127.0.0.1:14460 nts ca {certificate.cert} iburst minpoll 0 maxpoll 1\n"
                "disable ntp kernel\n"
                "restrict default\nrestrict 127.0.0.1\nrestrict ::1\n"
                f"logfile {log}\n"
            )
            ntpd = start_ntpd(namespace, config, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            peer = nts = ""
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                time.sleep(1)
                ntpq = [*namespace, str(NTPQ), "-n", "-c", "rv &1", "-c", "nts", "127.0.0.1"]
                result = subprocess.run(ntpq, capture_output=True, text=True, timeout=15)
                peer = nts = result.stdout
                good = re.search(r"NTS client recvs good:\s+(\d+)", nts)
                if "sel_sys.peer" in peer and good and int(good.group(1)) >= 3:
                    break
            log_text = log.read_text() if log.exists() else ""
            assert "Got 8 cookies, length 104, aead=15" in log_text, log_text
            assert re.search(r"status=\w+ conf, authenb, auth, reach, sel_sys\.peer", peer), peer + log_text
            assert "ntscookies=8" in peer, peer
            assert "stratum=4" in peer and "refid=127.127.1.1" in peer, peer
            assert re.search(r"NTS client recvs w error:\s+0\b", nts), nts
            offset = re.search(r"offset=(-?[\d.]+)", peer)
            assert offset is not None and abs(float(offset.group(1))) < 5.0, peer  # milliseconds
        finally:
            if ntpd is not None:
                stop_process(ntpd)
