"""Prometheus metrics for ``lockstep ntp serve --metrics-port P`` (as ntpd-rs's exporter does).

Nothing is counted twice or on the hot path: :class:`ServerMetrics` reads the counters the cores
keep anyway (:class:`lockstep.ntp.server.ServerCounters`, the NTS server's and the NTS-KE
server's) when Prometheus scrapes, and turns them into the text format with the reference client
(``prometheus-client``). Counters are copied in one C-level step each, so a scrape from the HTTP
thread never sees a dict change size under it.

Exposed (all prefixed ``lockstep_ntp_``): requests received, answered, dropped by reason, kisses
sent by code; NTS cookies opened and rejected by reason; NTS-KE handshakes and refusals by
reason; and gauges for the stratum, the offset served on top of the system clock, and the root
distance.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from lockstep.ntp.server import NtpServer
from lockstep.ntp.timestamps import to_seconds

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from lockstep.ntp.aio.nts_ke import NtsKeServer


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(f"lockstep_ntp_{name}", documentation, value=value)


def _by_label(name: str, documentation: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"lockstep_ntp_{name}", documentation, labels=[label])
    for key, value in sorted(counts.items()):
        family.add_metric([str(key)], value)
    return family


class ServerMetrics(Collector):
    """The metrics of one NTP server core (and its NTS-KE server, if any), read at scrape time.

    ``clock`` gives the system clock as a full NTP time (for the root distance's ageing)."""

    def __init__(self, core: NtpServer, clock: Callable[[], int], ke: NtsKeServer | None = None) -> None:
        self.core = core
        self.clock = clock
        self.ke = ke

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        core = self.core
        counters = core.counters
        dropped = dict(counters.dropped)
        kisses = dict(counters.kisses)
        replied, kiss_sent = counters.replied, counters.kiss_sent
        yield _counter(
            "requests_received", "NTP datagrams received.", replied + kiss_sent + sum(dropped.values())
        )
        yield _counter("requests_answered", "Requests answered with time (NTS included).", replied)
        yield _by_label("requests_dropped", "Datagrams dropped, by reason.", "reason", dropped)
        yield _by_label("kisses_sent", "Kiss-o'-Death replies sent, by code.", "code", kisses)
        if core.nts is not None:
            nts = core.nts.counters
            yield _counter(
                "nts_cookies_opened", "NTS cookies decrypted and used (RFC 8915).", nts.authenticated
            )
            yield _by_label(
                "nts_cookies_rejected",
                "NTS cookies that could not be used (NAK sent).",
                "reason",
                dict(nts.nak_reasons),
            )
        if self.ke is not None:
            ke = self.ke.counters
            yield _counter("nts_ke_handshakes", "NTS-KE sessions completed.", ke.served)
            yield _by_label(
                "nts_ke_failures",
                "NTS-KE connections refused or failed, by reason.",
                "reason",
                dict(ke.refused),
            )
        state = core.state
        yield GaugeMetricFamily(
            "lockstep_ntp_stratum", "Stratum served (16: unsynchronised).", value=state.stratum
        )
        yield GaugeMetricFamily(
            "lockstep_ntp_offset_seconds",
            "Correction served on top of the system clock (from --server sources).",
            value=to_seconds(core.clock_offset),
        )
        yield GaugeMetricFamily(
            "lockstep_ntp_root_distance_seconds",
            "Root distance served: root delay / 2 + root dispersion (RFC 5905 §11.2.3).",
            value=core.root_distance(self.clock()),
        )


def serve_metrics(host: str, port: int, metrics: ServerMetrics) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` (any path, in fact) on ``host``:``port`` from a daemon thread; call
    ``shutdown()`` on the returned server to stop."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics)
    return start_http_server(port, addr=host, registry=registry)
