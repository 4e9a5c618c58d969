"""Timestamp quality: Lockstep's server as a chronyd client sees it, beside a chronyd server.

    .venv/bin/python bench/ntp_timestamps.py [--samples 120] [--basic]

One chronyd 4.3 client (``-x``) polls, every second, both ``lockstep ntp serve --local-stratum
10`` on 127.0.0.2 and a chronyd server (``local stratum 10``) on 127.0.0.1, in interleaved mode
(``xleave``) unless ``--basic``, and logs its measurements. For each server this prints the
median and 90th percentile of the peer delay chronyd measured, the jitter (the standard
deviation of the offsets: both servers read the same clock, so the truth is 0), how many samples
were interleaved, and how many its delay test C rejected. The first 10 samples of each are left
out (the exchange starts in basic mode and chronyd's tests need a few samples).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=120, help="samples of each server that count")
    parser.add_argument("--basic", action="store_true", help="chronyd without xleave (basic mode)")
    args = parser.parse_args()
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
