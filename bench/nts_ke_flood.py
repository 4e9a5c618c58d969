"""NTS-KE under connection floods: legitimate clients' success rate and latency.

    .venv/bin/python bench/nts_ke_flood.py [--attempts 100] [--flood-addresses 16] [--interval 0.1]
                                           [--wide-addresses 40]

Our NTS-KE server (``lockstep ntp serve``'s limits: 1 connection/s per address with a burst of
8, 32 sessions, 4 per address, a 2 s ClientHello deadline) on 127.0.0.1. Flood addresses
127.0.0.10.. each open a TCP connection every ``--interval`` seconds and hold it 6 s; ten
legitimate addresses 127.0.0.100..109 run ``--attempts`` key exchanges, one every 100 ms, while
it goes on. Four floods, one after the other: none (the baseline), silent connections (send
nothing: the attack of issue 14 A.4), connections that send a genuine ClientHello and then
stall (each takes a slot, which it gives up to a waiting client once it has stalled 0.5 s), and
that last flood from ``--wide-addresses`` addresses (127.0.1.1..) opening one connection a
second each, within the per-address rate limit (the re-review's variant). No peer to compare
against: chronyd's NTS-KE server is the model for the limits, not a competitor here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from lockstep.ntp.aio.nts_ke import KeRateLimit, NtsKeServer, server_context
from lockstep.ntp.nts.cookies import CookieKeys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nts.ke_flood import Flood, Outcomes, client_hello, legitimate_exchanges, loopback_addresses
from nts.nts_peers import make_certificate


def run(
    certfile: str,
    keyfile: str,
    payload: bytes | None,
    addresses: list[str],
    interval: float,
    args: argparse.Namespace,
) -> tuple[int, Outcomes, dict[str, int]]:
    server = NtsKeServer(
        server_context(certfile, keyfile),
        CookieKeys(os.urandom(32)),
        port=0,
        ntp_port=123,
        rate_limit=KeRateLimit(),
    )
    server.start()
    legitimate = loopback_addresses(100, 10)
    try:
        if payload is None:
            return (
                0,
                legitimate_exchanges(server.address[1], certfile, legitimate, attempts=args.attempts),
                {},
            )
        with Flood(server.address[1], addresses, interval=interval, payload=payload) as flood:
            time.sleep(2.0)
            outcomes = legitimate_exchanges(server.address[1], certfile, legitimate, attempts=args.attempts)
        return flood.opened, outcomes, dict(server.counters.refused)
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=100)
    parser.add_argument("--flood-addresses", type=int, default=16)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--wide-addresses", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        certificate = make_certificate(Path(directory))
        cert, key = str(certificate.cert), str(certificate.key)
        hello = client_hello(cert)
        narrow = loopback_addresses(10, args.flood_addresses)
        wide = [f"127.0.{1 + n // 250}.{1 + n % 250}" for n in range(args.wide_addresses)]
        floods = {
            "none": (None, narrow, args.interval),
            "silent": (b"", narrow, args.interval),
            "ClientHello, then stall": (hello, narrow, args.interval),
            f"ClientHello, then stall, {len(wide)} addresses at 1/s": (hello, wide, 1.0),
        }
        print("| flood | flood connections | legitimate success | median | slowest | server refusals |")
        print("|---|---|---|---|---|---|")
        for name, (payload, addresses, interval) in floods.items():
            opened, outcomes, refused = run(cert, key, payload, addresses, interval, args)
            ordered = sorted(outcomes.latencies) or [float("nan")]
            success = f"{len(outcomes.latencies)}/{outcomes.attempts} ({outcomes.success_rate:.1%})"
            latency = f"{ordered[len(ordered) // 2] * 1000:.1f} ms | {ordered[-1] * 1000:.1f} ms"
            refusals = ", ".join(f"{reason}: {count}" for reason, count in sorted(refused.items()))
            print(
                f"| {name} | {opened} | {success} | {latency} | {refusals or '—'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
