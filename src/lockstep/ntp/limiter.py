"""Who the NTP server answers: per-address rate limiting and a deny list (RFC 8633).

:class:`ClientLimiter` is the policy half of :class:`lockstep.ntp.server.NtpServer`. Each client
address has a leaky bucket, kept as the generic cell rate algorithm's *theoretical arrival time*
(TAT): every admitted request moves it ``1 / average_rate`` seconds later, starting from "now"
when it lies in the past, and a request is refused when it would put the TAT more than
``burst / average_rate`` seconds ahead of its arrival. That is one integer per client, and a
client whose TAT has passed carries no information, so a full table first forgets those.

Refused clients get a Kiss-o'-Death at most once per ``kod_interval`` (DENY for a denied
network, RATE for a rate-limited one); their other requests are dropped.

:meth:`ClientLimiter.admit_batch` applies the same rules to a whole batch of requests with a few
passes in C (``map`` over dicts and lists) instead of one Python call per request (only clients
still in debt get one), and gives the same decisions as :meth:`ClientLimiter.admit` called
request by request. It declines (returns None) only when the table could fill up part way
through the batch. Where the compiled module was built (lockstep/ntp/nts/_fastpath.c), its
``charge_batch`` does the rate limit's pass over the batch, one dictionary lookup and store per
request in C; the Python passes here are the reference it is tested against and serve without it.

Client keys: any hashable value identifying an address — its text, its packed bytes, or an
``int`` (an IPv4 address's value, or :data:`IPV6_KEY` plus an IPv6 address's value), which is
what the batched adapter uses because it builds them for a whole batch at once. The rate limit
and the kisses count an IPv6 client's whole /64 as one client (:mod:`lockstep.ntp.limit_key`).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from operator import add, le
from typing import Final

from lockstep.ntp.limit_key import IPV6_KEY, limit_key, limit_keys
from lockstep.ntp.timestamps import ONE_SECOND
from lockstep.ntp.wire import KissCode

try:  # built by the package's build (setup.py) when a C compiler and Nettle's headers are there
    from lockstep.ntp.nts._fastpath import charge_batch
except ImportError:  # pragma: no cover - the Python passes of admit_batch serve alone
    charge_batch = None  # type: ignore[assignment]

__all__ = ["IPV6_KEY", "ClientLimiter", "RateLimit", "client_address"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_LONG_AGO: Final = -(1 << 80)  # a "last kiss" time before any real one
_DENY_CACHE_SIZE: Final = 1 << 16


@dataclass(slots=True)
class RateLimit:
    """Per-address leaky bucket (RFC 8633 §4.4; compare chrony's ``ratelimit``); an IPv6 /64 is
    one address here.

    Each request adds ``1 / average_rate`` seconds of debt; debt drains in real time; a request
    that would push the debt over ``burst / average_rate`` is refused. Refusals answer with a
    RATE kiss at most once per ``kod_interval`` seconds per address. At most ``max_clients``
    addresses are tracked.
    """

    average_rate: float = 1.0  # requests per second allowed on average
    burst: int = 16
    kod_interval: float = 8.0
    max_clients: int = 100_000


def client_address(client: Hashable) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a client key stands for (see the module docstring), or None."""
    try:
        if isinstance(client, int):
            if client >= IPV6_KEY:
                return ipaddress.IPv6Address(client - IPV6_KEY)
            return ipaddress.IPv4Address(client)
        if isinstance(client, bytes):
            return ipaddress.ip_address(client)
        return ipaddress.ip_address(str(client))
    except ValueError:
        return None


_ChargeBatch = Callable[[dict[Hashable, int], list[Hashable], list[int], int, int], tuple[list[int], int]]


class ClientLimiter:
    """The deny list and the per-address rate limit, with the state they need."""

    def __init__(
        self, rate_limit: RateLimit | None = None, deny: Sequence[Network] = (), *, compiled: bool = True
    ) -> None:
        """``compiled=False``: :meth:`admit_batch` keeps to its Python passes (the reference)."""
        self.rate_limit = rate_limit
        self._charge_batch = charge_batch if compiled else None
        self.deny = tuple(deny)
        limit = rate_limit or RateLimit()
        self._cost = round(ONE_SECOND / limit.average_rate)  # one request's debt, 2**-32 s
        self._window = self._cost * limit.burst  # the most debt a client may run up
        self._kod_interval = round(limit.kod_interval * ONE_SECOND)
        self._max_clients = limit.max_clients
        self._tats: dict[Hashable, int] = {}  # client -> theoretical arrival time (full NTP time)
        self._last_kiss: dict[Hashable, int] = {}  # client -> when it was last sent a kiss
        self._denied: dict[Hashable, bool] = {}  # deny-list verdicts by client key

    @property
    def tracked(self) -> int:
        """How many clients the rate limiter holds state for."""
        return len(self._tats)

    def is_denied(self, client: Hashable) -> bool:
        """Whether ``client`` is in a denied network (verdicts are cached per key)."""
        verdict = self._denied.get(client)
        if verdict is None:
            address = client_address(client)
            verdict = address is not None and any(address in network for network in self.deny)
            if len(self._denied) >= _DENY_CACHE_SIZE:
                self._denied.clear()
            self._denied[client] = verdict
        return verdict

    def admit(self, client: Hashable, now: int) -> bool:
        """Charge one request arriving at ``now`` (full NTP time) to ``client``; False: refused."""
        return self._charge(limit_key(client), now)

    def _charge(self, client: Hashable, now: int) -> bool:
        """:meth:`admit` for a client already turned into its :func:`limit_key`."""
        tats = self._tats
        tat = tats.get(client)
        if tat is None:
            if len(tats) >= self._max_clients:
                self._make_room(now)
            tat = now
        elif tat < now:
            tat = now
        tat += self._cost
        if tat - now > self._window:
            return False  # refused requests add no debt
        tats[client] = tat
        return True

    def admit_batch(
        self, clients: Sequence[Hashable], arrivals: Sequence[int]
    ) -> list[tuple[int, KissCode]] | None:
        """:meth:`is_denied` and :meth:`admit` over a batch, in order, with the same results.

        Returns the refused requests as (index, kiss code to consider: DENY or RATE), sorted, or
        None when the batch must be admitted one request at a time instead (nothing has then
        been changed): when the table could fill up part way, or the burst is 0.
        """
        refused: list[tuple[int, KissCode]] = []
        positions: Sequence[int] = range(len(clients))
        if self.deny:
            verdicts = list(map(self._denied.get, clients))
            if None in verdicts:
                verdicts = [self.is_denied(client) for client in clients]
            if True in verdicts:
                refused = [(i, KissCode.DENY) for i, verdict in enumerate(verdicts) if verdict]
                allowed = [not verdict for verdict in verdicts]
                positions = list(itertools.compress(positions, allowed))
                clients = list(itertools.compress(clients, allowed))
                arrivals = list(itertools.compress(arrivals, allowed))
        if self.rate_limit is None:
            return refused
        if self._window < self._cost:
            return None  # a burst of 0 refuses everyone: leave that to admit()
        clients = limit_keys(clients)
        tats = self._tats
        count = len(clients)
        if len(tats) + count > self._max_clients:
            return None  # admit() might have to make room part way: leave the batch to it
        if self._charge_batch is not None:
            return self._charge_compiled(self._charge_batch, refused, positions, clients, arrivals)
        # New clients enter the table in batch order, as admit() would put them, with no debt
        # (a TAT of 0 is as good as none). Then each client is independent of the others,
        # except for its own repeats in the batch. The usual case: a client without debt left
        # (its TAT has passed) is admitted and its TAT becomes arrival + cost, as admit() would
        # do; a client in debt, or appearing more than once, goes through admit() in order.
        paid_up = list(map(le, map(tats.setdefault, clients, itertools.repeat(0)), arrivals))
        if len(set(clients)) != count:
            repeated = {client for client, times in Counter(clients).items() if times > 1}
            paid_up = [flag and client not in repeated for flag, client in zip(paid_up, clients, strict=True)]
        if False in paid_up:
            for i, client, arrival, flag in zip(positions, clients, arrivals, paid_up, strict=True):
                if not flag and not self._charge(client, arrival):
                    refused.append((i, KissCode.RATE))
            refused.sort()
            clients = list(itertools.compress(clients, paid_up))
            arrivals = list(itertools.compress(arrivals, paid_up))
        tats.update(zip(clients, map(add, arrivals, itertools.repeat(self._cost)), strict=True))
        return refused

    def _charge_compiled(
        self,
        compiled: _ChargeBatch,
        refused: list[tuple[int, KissCode]],
        positions: Sequence[int],
        clients: Sequence[Hashable],
        arrivals: Sequence[int],
    ) -> list[tuple[int, KissCode]]:
        """The rate limit's part of :meth:`admit_batch` by the compiled ``charge_batch``: the same
        decisions as :meth:`_charge` request by request (tests/ntp/test_limiter.py compares them)."""
        if not isinstance(clients, list):
            clients = list(clients)
        if not isinstance(arrivals, list):
            arrivals = list(arrivals)
        rated, stopped = compiled(self._tats, clients, arrivals, self._cost, self._window)
        rate = KissCode.RATE
        had_denials = bool(refused)
        refused.extend((positions[i], rate) for i in rated)
        for i in range(stopped, len(clients)):  # a time beyond 128 bits: the Python reference goes on
            if not self._charge(clients[i], arrivals[i]):
                refused.append((positions[i], rate))
        if had_denials:
            refused.sort()
        return refused

    def kiss_due(self, client: Hashable, now: int) -> bool:
        """Whether a refused ``client`` may be sent a kiss at ``now``: none in the last
        ``kod_interval`` (then :meth:`record_kiss` when it is sent)."""
        return now - self._last_kiss.get(limit_key(client), _LONG_AGO) >= self._kod_interval

    def record_kiss(self, client: Hashable, now: int) -> None:
        """``client`` was sent a kiss at ``now``."""
        client = limit_key(client)
        last_kiss = self._last_kiss
        if client not in last_kiss and len(last_kiss) >= self._max_clients:
            cutoff = now - self._kod_interval
            self._forget(last_kiss, [key for key, when in last_kiss.items() if when <= cutoff])
        last_kiss[client] = now

    def _make_room(self, now: int) -> None:
        """Forget the clients without debt; if that frees less than an eighth of the table, the
        oldest entries too (amortised O(1) per new client, even under a flood of addresses)."""
        tats = self._tats
        self._forget(tats, [key for key, tat in tats.items() if tat <= now])

    def _forget(self, table: dict[Hashable, int], keys: list[Hashable]) -> None:
        for key in keys:
            del table[key]
        excess = len(table) - self._max_clients * 7 // 8
        if excess > 0:
            for key in list(itertools.islice(table, excess)):
                del table[key]
