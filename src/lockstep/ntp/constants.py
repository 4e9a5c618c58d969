"""Protocol constants (RFC 5905 §7.2 and Appendix A.1.1), in seconds unless said otherwise."""

from __future__ import annotations

from typing import Final

VERSION: Final = 4
PORT: Final = 123
PHI: Final = 15e-6  # frequency tolerance, s/s
NSTAGE: Final = 8  # clock filter stages
MAXDISP: Final = 16.0  # maximum dispersion
MINDISP: Final = 0.01  # minimum dispersion increment
MAXDIST: Final = 1.5  # distance threshold (RFC 5905 says 1; ntpd and NTPsec use 1.5)
MAXSTRAT: Final = 16  # unsynchronised stratum
MINPOLL: Final = 0  # log2 s; RFC 5905 says 4, ntpd takes 3, chrony -6: we allow 1 s on LANs
MAXPOLL: Final = 17  # log2 s
DEFAULT_MINPOLL: Final = 6
DEFAULT_MAXPOLL: Final = 10
NSANE: Final = 1  # minimum intersection survivors
NMIN: Final = 3  # minimum cluster survivors
SGATE: Final = 3.0  # spike gate (clock filter)
PGATE: Final = 4.0  # poll-adjust gate
LIMIT: Final = 30  # poll-adjust threshold
STEPT: Final = 0.128  # step threshold
WATCH: Final = 900.0  # stepout threshold
PANICT: Final = 1000.0  # panic threshold
MAXFREQ: Final = 500e-6  # frequency tolerance, s/s
BURST_INTERVAL: Final = 2.0  # spacing of iburst packets
BURST_COUNT: Final = 6  # packets in an iburst (RFC 5905 §13 says 8; chrony sends 4)
