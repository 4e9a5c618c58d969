"""Choosing the time: selection, cluster and combine (RFC 5905 §11.2, Appendix A.5.5).

The three steps take the candidates that passed the fitness checks (A.5.5.2 ``fit``):

1. :func:`select_truechimers` — the intersection algorithm (§11.2.1, a variant of Marzullo's):
   find the smallest interval that contains the correctness intervals
   ``[offset - root_distance, offset + root_distance]`` of a majority of candidates; candidates
   whose interval misses it are falsetickers.
2. :func:`cluster` — (§11.2.2) repeatedly drop the survivor whose offset is furthest, in the RMS
   sense (the selection jitter), from the others, until at most NMIN remain or the largest
   selection jitter is below the smallest peer jitter.
3. :func:`combine` — (§11.2.3) average the survivors' offsets weighted by the reciprocal of their
   root distance, and compute the system jitter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lockstep.ntp.constants import NMIN, NSANE


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the mitigation algorithms need to know about one source."""

    name: str
    stratum: int
    offset: float  # theta, seconds
    jitter: float  # psi, seconds
    root_distance: float  # lambda, seconds (A.5.5.2 root_dist)


@dataclass(frozen=True, slots=True)
class Intersection:
    """Result of the intersection algorithm: the interval and who is inside it."""

    low: float
    high: float
    truechimers: tuple[Candidate, ...]
    falsetickers: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Combined:
    """The combined system offset and jitter (§11.2.3)."""

    offset: float
    jitter: float  # RMS of survivor offsets around the system peer's, combined with its jitter


def select_truechimers(candidates: Sequence[Candidate], minimum: int = NSANE) -> Intersection | None:
    """The intersection algorithm of RFC 5905 §11.2.1 (A.5.5.1 ``clock_select``).

    Returns None when no interval contains a majority of the candidates (no consensus), or when
    fewer than ``minimum`` candidates survive.
    """
    n = len(candidates)
    if n == 0:
        return None
    # Endpoints typed -1 (lower), 0 (midpoint), +1 (upper), sorted by value then type.
    edges: list[tuple[float, int]] = []
    for c in candidates:
        edges.append((c.offset - c.root_distance, -1))
        edges.append((c.offset, 0))
        edges.append((c.offset + c.root_distance, 1))
    edges.sort()
    low = high = 0.0
    found_interval = False
    allow = 0
    while 2 * allow < n:
        found = 0
        chime = 0
        low = math.inf
        for value, kind in edges:
            chime -= kind
            if chime >= n - allow:
                low = value
                break
            if kind == 0:
                found += 1
        chime = 0
        high = -math.inf
        for value, kind in reversed(edges):
            chime += kind
            if chime >= n - allow:
                high = value
                break
            if kind == 0:
                found += 1
        # A majority must agree, and the midpoints outside the interval must not exceed allow.
        if found <= allow and low < high:
            found_interval = True
            break
        allow += 1
    if not found_interval:
        return None
    truechimers = tuple(
        c for c in candidates if c.offset - c.root_distance <= high and c.offset + c.root_distance >= low
    )
    if len(truechimers) < minimum:
        return None
    falsetickers = tuple(c for c in candidates if c not in truechimers)
    return Intersection(low, high, truechimers, falsetickers)


def _merit(candidate: Candidate) -> tuple[int, float]:
    # Ordering of §11.2.2: stratum first, then root distance (A.5.5.1 uses stratum * MAXDIST + λ).
    return (candidate.stratum, candidate.root_distance)


def cluster(truechimers: Sequence[Candidate], minimum: int = NMIN) -> tuple[Candidate, ...]:
    """The cluster algorithm of RFC 5905 §11.2.2; survivors come back best first."""
    survivors = sorted(truechimers, key=_merit)
    while len(survivors) > minimum:
        selection_jitter = [
            math.sqrt(sum((other.offset - c.offset) ** 2 for other in survivors) / (len(survivors) - 1))
            for c in survivors
        ]
        worst = max(range(len(survivors)), key=lambda i: selection_jitter[i])
        if selection_jitter[worst] <= min(c.jitter for c in survivors):
            break
        del survivors[worst]
    return tuple(survivors)


def combine(survivors: Sequence[Candidate]) -> Combined:
    """The combine algorithm of RFC 5905 §11.2.3; ``survivors[0]`` is the system peer."""
    if not survivors:
        raise ValueError("combine needs at least one survivor")
    weights = [1.0 / max(c.root_distance, 1e-9) for c in survivors]
    total = sum(weights)
    offset = sum(w * c.offset for w, c in zip(weights, survivors, strict=True)) / total
    peer = survivors[0]
    selection = sum(w * (c.offset - peer.offset) ** 2 for w, c in zip(weights, survivors, strict=True))
    jitter = math.sqrt(peer.jitter**2 + selection / total)
    return Combined(offset=offset, jitter=jitter)
