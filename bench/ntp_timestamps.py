"""Timestamp quality: Lockstep's server as a chronyd client sees it, beside a chronyd server.

    .venv/bin/python bench/ntp_timestamps.py [--samples 120] [--basic]
    .venv/bin/python bench/ntp_timestamps.py --transmit-lag [--samples 300]

One chronyd 4.3 client (``-x``) polls, every second, both ``lockstep ntp serve --local-stratum
10`` on 127.0.0.2 and a chronyd server (``local stratum 10``) on 127.0.0.1, in interleaved mode
(``xleave``) unless ``--basic``, and logs its measurements. For each server this prints the
median and 90th percentile of the peer delay chronyd measured, the jitter (the standard
deviation of the offsets: both servers read the same clock, so the truth is 0), how many samples
were interleaved, and how many its delay test C rejected. The first 10 samples of each are left
out (the exchange starts in basic mode and chronyd's tests need a few samples).

``--transmit-lag`` measures the part of a basic-mode delay that is the server's: a client on
loopback sends plain requests to each server in turn (chronyd, then ``lockstep ntp serve``, both
``local stratum 10``, every 3 ms) and takes T4 - T3, its kernel receive timestamp of the reply
minus the reply's transmit timestamp (both read the same clock): how long after writing T3 the
reply reached the client. The first 20 are left out; median, 10th and 90th percentiles.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import ntp_throughput  # its chronyd and lockstep_server launchers

from lockstep.ntp.aio import mmsg
from lockstep.ntp.timestamps import from_timestamp, from_unix_ns, to_seconds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ntp.ntp_peers import OURS, THEIRS, Measurement, side_by_side

WARM_UP = 10


def summary(samples: list[Measurement]) -> dict[str, float]:
    delays = sorted(sample.delay for sample in samples)
    return {
        "delay": statistics.median(delays),
        "delay_p90": delays[int(0.9 * (len(delays) - 1))],
        "jitter": statistics.pstdev(sample.offset for sample in samples),
        "interleaved": sum(sample.interleaved for sample in samples),
        "rejected": sum(not sample.delay_test_passed for sample in samples),
        "count": len(samples),
    }


def transmit_lag(port: int, count: int) -> list[float]:
    """T4 - T3 in µs for ``count`` basic exchanges with the server on 127.0.0.1 ``port``."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setsockopt(socket.SOL_SOCKET, mmsg.SO_TIMESTAMPING, mmsg.RX_TIMESTAMPING)
    client.settimeout(1.0)
    lags = []
    for _ in range(count + 20):
        client.sendto(bytes([0x23]) + bytes(39) + os.urandom(8), ("127.0.0.1", port))
        try:
            data, ancillary, _, _ = client.recvmsg(1024, 256)
        except TimeoutError:
            continue
        for level, kind, payload in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, mmsg.SO_TIMESTAMPING):
                seconds, nanoseconds = struct.unpack_from("=qq", payload)
                arrival = from_unix_ns(seconds * 1_000_000_000 + nanoseconds)
                lags.append(
                    to_seconds(arrival - from_timestamp(int.from_bytes(data[40:48], "big"), arrival)) * 1e6
                )
        time.sleep(0.003)
    client.close()
    return sorted(lags[20:])


def main_transmit_lag(count: int) -> None:
    servers: dict[str, Callable[[int], AbstractContextManager[int]]] = {
        "chronyd": lambda port: ntp_throughput.chronyd(port, None),
        "lockstep ntp serve": lambda port: ntp_throughput.lockstep_server(port, None, rate_limit=True),
    }
    for name, start in servers.items():
        port = ntp_throughput.free_port()
        with start(port):
            lags = transmit_lag(port, count)
        p10, p90 = lags[len(lags) // 10], lags[9 * len(lags) // 10]
        print(
            f"{name:<19} T4 - T3 median {statistics.median(lags):5.2f} us, "
            f"p10 {p10:5.2f} us, p90 {p90:5.2f} us ({len(lags)} replies)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=120, help="samples of each server that count")
    parser.add_argument("--basic", action="store_true", help="chronyd without xleave (basic mode)")
    parser.add_argument("--transmit-lag", action="store_true", help="T4 - T3 of basic replies, both servers")
    args = parser.parse_args()
    if args.transmit_lag:
        main_transmit_lag(args.samples)
        return
    with tempfile.TemporaryDirectory() as tmp:
        found, _ = side_by_side(Path(tmp), args.samples + WARM_UP, xleave=not args.basic)
    results = {}
    for name, address in (("lockstep ntp serve", OURS), ("chronyd", THEIRS)):
        results[name] = summary(found.get(address, [])[WARM_UP : WARM_UP + args.samples])
        r = results[name]
        print(
            f"{name:<19} {r['count']:.0f} samples ({r['interleaved']:.0f} interleaved): peer delay median "
            f"{r['delay'] * 1e6:.2f} us, p90 {r['delay_p90'] * 1e6:.2f} us; "
            f"jitter {r['jitter'] * 1e6:.2f} us; test C rejected {r['rejected']:.0f}"
        )
    ours, theirs = results["lockstep ntp serve"], results["chronyd"]
    print(
        f"ratio lockstep/chronyd: delay {ours['delay'] / theirs['delay']:.2f}x, "
        f"jitter {ours['jitter'] / theirs['jitter']:.2f}x"
    )


if __name__ == "__main__":
    main()
