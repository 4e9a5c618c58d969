"""``lockstep ntp query|monitor|serve``: NTPv4 (RFC 5905) from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import multiprocessing
import signal
import sys
import threading
import time
from typing import Any

from lockstep.cli import CommandError
from lockstep.ntp.aio import clock
from lockstep.ntp.aio.client import Monitor, QueryFailed, QueryResult, query
from lockstep.ntp.aio.server import UdpServer, open_udp_socket, serve_workers
from lockstep.ntp.client import NtpClient, SourceReport, SystemEvent
from lockstep.ntp.constants import MAXPOLL, MINPOLL, PORT
from lockstep.ntp.events import ClockSlewed, ClockStepped, ClockUpdated, SystemPeerChanged
from lockstep.ntp.nts.records import KE_PORT
from lockstep.ntp.server import NtpServer, RateLimit, ServerState
from lockstep.ntp.timestamps import to_unix_ns
from lockstep.ntp.wire import LeapIndicator, format_reference_id

logger = logging.getLogger(__name__)

LEAP_TEXT = {
    LeapIndicator.NO_WARNING: "no warning",
    LeapIndicator.LAST_MINUTE_61: "leap second insertion pending",
    LeapIndicator.LAST_MINUTE_59: "leap second deletion pending",
    LeapIndicator.UNSYNCHRONIZED: "unsynchronised",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("ntp", help="NTPv4 client, monitor and server (RFC 5905)")
    verbs = parser.add_subparsers(dest="ntp_verb", required=True, metavar="COMMAND")

    q = verbs.add_parser("query", help="one exchange with a server, like ntpdig/sntp")
    q.add_argument("server", metavar="HOST[:PORT]", help="with --nts: the NTS-KE server, HOST[:KE_PORT]")
    q.add_argument("--nts", action="store_true", help="authenticate with NTS (RFC 8915): NTS-KE, then NTP")
    q.add_argument("--ca", metavar="FILE", help="with --nts: trust these CA certificates (PEM)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    q.set_defaults(handler=_query)

    m = verbs.add_parser("monitor", help="continuous client with a live sources table")
    m.add_argument("servers", nargs="+", metavar="SERVER")
    m.add_argument("--nts", action="store_true", help="every SERVER is an NTS-KE server HOST[:KE_PORT]")
    m.add_argument("--ca", metavar="FILE", help="with --nts: trust these CA certificates (PEM)")
    m.add_argument("--minpoll", type=_poll, default=6, help="log2 s (default 6)")
    m.add_argument("--maxpoll", type=_poll, default=10, help="log2 s (default 10)")
    m.add_argument("--no-iburst", dest="iburst", action="store_false")
    m.add_argument("--duration", type=float, help="stop after this many seconds")
    m.add_argument("--json", action="store_true", help="one JSON object per clock update")
    m.add_argument(
        "--adjust",
        action="store_true",
        help="discipline the system clock (step/slew with adjtimex; needs CAP_SYS_TIME)",
    )
    m.set_defaults(handler=_monitor)

    s = verbs.add_parser("serve", help="serve time to NTPv3/v4 clients")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=PORT, help=f"UDP port (default {PORT})")
    s.add_argument(
        "--server",
        dest="sources",
        action="append",
        default=[],
        metavar="SOURCE",
        help="synchronise from this upstream server (repeatable)",
    )
    s.add_argument(
        "--local-stratum",
        type=int,
        metavar="N",
        help="serve the local clock at stratum N when no source is selected",
    )
    s.add_argument(
        "--rate", type=float, default=1.0, help="average requests/s allowed per client address (default 1)"
    )
    s.add_argument("--burst", type=int, default=16, help="requests allowed in a burst (16)")
    s.add_argument("--no-rate-limit", dest="rate_limit", action="store_false")
    s.add_argument(
        "--deny",
        action="append",
        default=[],
        metavar="NETWORK",
        help="answer this network with kiss-o'-death DENY (repeatable)",
    )
    s.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port with SO_REUSEPORT (default 1)"
    )
    s.add_argument("--nts-cert", metavar="FILE", help="serve NTS (RFC 8915): certificate chain (PEM)")
    s.add_argument("--nts-key", metavar="FILE", help="the certificate's private key (PEM)")
    s.add_argument("--nts-port", type=int, default=KE_PORT, help=f"NTS-KE TCP port (default {KE_PORT})")
    s.add_argument(
        "--nts-rotate", type=int, default=3600, help="seconds between cookie key rotations (default 3600)"
    )
    s.add_argument(
        "--nts-keep", type=int, default=24, help="old cookie keys still accepted (default 24 rotations)"
    )
    s.add_argument(
        "--nts-ntp-server",
        metavar="NAME",
        help="tell NTS clients to send NTP to NAME (NTPv4 Server Negotiation), not to this host",
    )
    s.add_argument(
        "--nts-secret",
        metavar="FILE",
        help="keep the cookie master secret in FILE (made 0600 if missing), so cookies survive restarts",
    )
    s.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics over HTTP on this TCP port (requests, drops, kisses, NTS, state)",
    )
    s.add_argument(
        "--metrics-host", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1)"
    )
    s.set_defaults(handler=_serve, log_level=logging.INFO)


def _poll(text: str) -> int:
    value = int(text)
    if not MINPOLL <= value <= MAXPOLL:
        raise argparse.ArgumentTypeError(f"poll must be within {MINPOLL}..{MAXPOLL}")
    return value


# -- query -------------------------------------------------------------------------------------


def _query(args: argparse.Namespace) -> int:
    if args.ca is not None and not args.nts:
        raise CommandError("--ca only applies with --nts")
    try:
        result = asyncio.run(query(args.server, timeout=args.timeout, nts=args.nts, cafile=args.ca))
    except QueryFailed as error:
        raise CommandError(str(error)) from None
    except OSError as error:
        raise CommandError(f"{args.server}: {error.strerror or error}") from None
    except ValueError as error:
        raise CommandError(f"bad server {args.server!r}: {error}") from None
    if args.json:
        print(json.dumps({**_result_json(result), "authenticated": "NTS" if args.nts else None}))
    else:
        print(_result_text(result))
        if args.nts:
            print("  authenticated   NTS (RFC 8915, AEAD_AES_SIV_CMAC_256)")
    return 0


def _result_json(result: QueryResult) -> dict[str, Any]:
    info = result.info
    return {
        "server": result.server,
        "address": result.address,
        "port": result.port,
        "offset": result.offset,
        "delay": result.delay,
        "dispersion": result.dispersion,
        "stratum": info.stratum,
        "reference_id": format_reference_id(info.stratum, info.reference_id),
        "leap": LEAP_TEXT[info.leap],
        "leap_indicator": int(info.leap),
        "version": info.version,
        "poll": info.poll,
        "precision": info.precision,
        "root_delay": info.root_delay,
        "root_dispersion": info.root_dispersion,
    }


def _result_text(result: QueryResult) -> str:
    info = result.info
    reference = format_reference_id(info.stratum, info.reference_id)
    return "\n".join(
        [
            f"server {result.server} ({result.address} port {result.port}), NTPv{info.version}",
            f"  offset          {result.offset:+.6f} s",
            f"  delay           {result.delay:.6f} s",
            f"  stratum         {info.stratum}",
            f"  reference id    {reference}",
            f"  leap indicator  {int(info.leap)} ({LEAP_TEXT[info.leap]})",
            f"  precision       2^{info.precision} s ({2.0**info.precision * 1e9:.1f} ns)",
            f"  root delay      {info.root_delay:.6f} s",
            f"  root dispersion {info.root_dispersion:.6f} s",
        ]
    )


# -- monitor -----------------------------------------------------------------------------------


def _fmt_seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1:
        return f"{value:+.3f}s"
    if magnitude >= 1e-3:
        return f"{value * 1e3:+.3f}ms"
    return f"{value * 1e6:+.0f}us"


def render_table(rows: list[SourceReport], client: NtpClient, now: int) -> str:
    """A table in the spirit of ``chronyc sources -v``."""
    lines = [
        "  .-- state: * system peer, + combined, - not combined, x falseticker, ? unusable",
        "  |",
        f"MS Name/IP address{'':15} Stratum Poll Reach LastRx  Last sample     Jitter",
        "=" * 80,
    ]
    for row in rows:
        stratum = "-" if row.stratum is None else str(row.stratum)
        age = "-" if row.last_receive_age is None else f"{row.last_receive_age:.0f}"
        jitter = _fmt_seconds(row.jitter).lstrip("+")
        lines.append(
            f"{row.mark.value}  {row.name:<32.32} {stratum:>7} {row.poll:>4} {row.reach:>5o}"
            f" {age:>6}  {_fmt_seconds(row.last_offset):>11} {jitter:>10}"
        )
    if client.system is not None:
        error = client.error_estimate(now)
        lines.append(
            f"\nsystem offset {_fmt_seconds(client.offset_at(now))}"
            f" +/- {_fmt_seconds(error).lstrip('+')}"
            f"  (jitter {_fmt_seconds(client.system.jitter).lstrip('+')},"
            f" stratum {client.system.stratum}, peer {client.system_peer})"
        )
    else:
        lines.append("\nsystem offset: not synchronised yet")
    return "\n".join(lines)


def _monitor(args: argparse.Namespace) -> int:
    if args.minpoll > args.maxpoll:
        raise CommandError("--minpoll must not exceed --maxpoll")
    if args.adjust:
        from lockstep.ntp.aio import adjust

        if not adjust.may_adjust():
            raise CommandError("--adjust needs permission to set the clock (CAP_SYS_TIME)")
    client = NtpClient(discipline=args.adjust, precision=clock.measure_precision())
    interactive = sys.stdout.isatty() and not args.json

    def on_event(event: SystemEvent) -> None:
        if args.adjust:
            from lockstep.ntp.aio import adjust

            if isinstance(event, ClockStepped):
                logger.warning("stepping the clock by %+.6f s", event.offset)
                adjust.step(event.offset)
            elif isinstance(event, ClockSlewed):
                adjust.slew(event.offset, event.frequency)
        if isinstance(event, ClockUpdated):
            now = clock.now()
            if args.json:
                print(json.dumps(_monitor_json(client, now)), flush=True)
            elif not interactive:
                print(render_table(client.sources(now), client, now) + "\n", flush=True)

    async def main() -> None:
        runner = Monitor(client, on_event=on_event, cafile=args.ca)
        for server in args.servers:
            try:
                await runner.add_source(
                    server, nts=args.nts, iburst=args.iburst, minpoll=args.minpoll, maxpoll=args.maxpoll
                )
            except (OSError, ValueError, QueryFailed) as error:
                raise CommandError(f"cannot use {server}: {error}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        task = asyncio.ensure_future(runner.run(stop))
        while interactive and not task.done():
            now = clock.now()
            sys.stdout.write("\x1b[H\x1b[2J" + render_table(client.sources(now), client, now) + "\n")
            sys.stdout.flush()
            await asyncio.wait([task], timeout=1.0)
        await task

    asyncio.run(main())
    if client.system is None:
        now = clock.now()
        unreachable = [row.name for row in client.sources(now) if row.reach == 0]
        reason = f"; unreachable: {', '.join(unreachable)}" if unreachable else ""
        raise CommandError(f"not synchronised: no source was selected{reason}")
    return 0


def _monitor_json(client: NtpClient, now: int) -> dict[str, Any]:
    system = client.system
    return {
        "time": to_unix_ns(now) / 1e9,
        # Extrapolated to "time" with the system peer's frequency: offset + frequency * elapsed
        # is the estimate at any later moment until the next update.
        "offset": client.offset_at(now),
        "frequency": None if system is None else system.frequency,
        "jitter": None if system is None else system.jitter,
        "error": client.error_estimate(now),
        "system_peer": client.system_peer,
        "stratum": None if system is None else system.stratum,
        "sources": [
            {
                "name": row.name,
                "state": row.mark.value,
                "stratum": row.stratum,
                "poll": row.poll,
                "reach": row.reach,
                "last_receive_age": row.last_receive_age,
                "last_offset": row.last_offset,
                "offset": row.offset,
                "delay": row.delay,
                "jitter": row.jitter,
            }
            for row in client.sources(now)
        ],
    }


# -- serve -------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    try:
        deny = [ipaddress.ip_network(text, strict=False) for text in args.deny]
    except ValueError as error:
        raise CommandError(f"bad --deny network: {error}") from None
    if args.local_stratum is not None and not 1 <= args.local_stratum <= 15:
        raise CommandError("--local-stratum must be within 1..15")
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if args.workers > 1 and args.sources:
        raise CommandError("--workers > 1 serves the local clock only; drop --server")
    if args.workers > 1 and args.metrics_port is not None:
        raise CommandError("--metrics-port reads one process's counters: use it with --workers 1")
    precision = clock.measure_precision()
    rate_limit = RateLimit(average_rate=args.rate, burst=args.burst) if args.rate_limit else None

    def fallback_state() -> ServerState:
        if args.local_stratum is not None:
            return ServerState.local(args.local_stratum, clock.now(), precision)
        return ServerState.unsynchronized(precision)

    nts = _nts_setup(args)

    def make_core() -> NtpServer:
        core = NtpServer(fallback_state(), rate_limit=rate_limit, deny=deny)
        if nts is not None:
            from lockstep.ntp.nts.server import NtsServer

            core.nts = NtsServer(nts[1])
        return core

    try:
        if args.workers > 1:
            ke = _start_nts_ke(args, nts, args.port)
            try:
                return _serve_workers(make_core, args.host, args.port, args.workers)
            finally:
                if ke is not None:
                    ke.close()
        return asyncio.run(_serve_one(make_core(), args, fallback_state, precision, nts))
    except OSError as error:
        raise CommandError(f"cannot serve on {args.host} port {args.port}: {error}") from None


def _nts_setup(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """The TLS context and cookie keys for ``--nts-cert``/``--nts-key`` (RFC 8915), or None."""
    if args.nts_cert is None and args.nts_key is None:
        return None
    if args.nts_cert is None or args.nts_key is None:
        raise CommandError("NTS needs both --nts-cert and --nts-key")
    if args.nts_rotate < 1 or args.nts_keep < 0:
        raise CommandError("--nts-rotate must be >= 1 and --nts-keep >= 0")
    import os

    from OpenSSL import SSL

    from lockstep.ntp.aio.nts_ke import server_context
    from lockstep.ntp.nts.cookies import CookieKeys

    try:
        context = server_context(args.nts_cert, args.nts_key)
    except (SSL.Error, OSError) as error:
        raise CommandError(f"cannot use --nts-cert/--nts-key: {error}") from None
    # One master secret, shared by every worker (keys are derived from it, RFC 8915 §6): from
    # --nts-secret when given (cookies then survive a restart), else fresh for this run.
    if args.nts_secret is not None:
        from lockstep.ntp.aio.nts_ke import load_or_create_secret

        try:
            master = load_or_create_secret(args.nts_secret)
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot use --nts-secret {args.nts_secret}: {error}") from None
    else:
        master = os.urandom(32)
    return context, CookieKeys(master, rotation=args.nts_rotate, keep=args.nts_keep)


def _start_nts_ke(args: argparse.Namespace, nts: tuple[Any, Any] | None, ntp_port: int) -> Any:
    if nts is None:
        return None
    from lockstep.ntp.aio.nts_ke import KeRateLimit, NtsKeServer

    try:
        ke = NtsKeServer(
            nts[0],
            nts[1],
            host=args.host,
            port=args.nts_port,
            ntp_server=args.nts_ntp_server,
            ntp_port=None if ntp_port == PORT else ntp_port,
            rate_limit=KeRateLimit() if args.rate_limit else None,
        )
    except OSError as error:
        raise CommandError(f"cannot serve NTS-KE on {args.host} port {args.nts_port}: {error}") from None
    ke.start()
    print(f"serving NTS-KE on {ke.address[0]} port {ke.address[1]}", flush=True)
    return ke


def _serve_workers(make_core: Any, host: str, port: int, workers: int) -> int:
    # Bind once in the parent first so a busy port is reported before forking.
    open_udp_socket(host, port, reuse_port=True).close()

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Handlers first, so a signal during start-up still stops the workers started so far (they
    # restore the defaults for themselves, and die with this process in any case: PDEATHSIG).
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    failed = None
    try:
        processes = serve_workers(make_core, host, port, workers)
        print(f"serving NTP on {host} port {port} with {workers} worker processes", flush=True)
        while all(p.is_alive() for p in processes):
            time.sleep(0.5)
        failed = next(p for p in processes if not p.is_alive())
    except KeyboardInterrupt:
        pass
    finally:
        children = multiprocessing.active_children()  # also those of an interrupted start
        for process in children:
            process.terminate()
        for process in children:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
    if failed is not None:
        raise CommandError(f"worker process {failed.pid} exited with status {failed.exitcode}")
    return 0


async def _serve_one(
    core: NtpServer, args: argparse.Namespace, fallback: Any, precision: int, nts: Any = None
) -> int:
    server = UdpServer(core, open_udp_socket(args.host, args.port))
    service: tuple[threading.Thread, threading.Event] | None = None
    if server.batched:
        service = server.start_thread()  # blocking recvmmsg on its own thread: the fast path
    else:
        server.start()
    print(f"serving NTP on {server.address[0]} port {server.address[1]}", flush=True)
    ke = _start_nts_ke(args, nts, server.address[1])
    metrics = None
    if args.metrics_port is not None:
        from lockstep.ntp.aio.metrics import ServerMetrics, serve_metrics

        metrics, _ = serve_metrics(args.metrics_host, args.metrics_port, ServerMetrics(core, clock.now, ke))
        print(f"serving metrics on http://{args.metrics_host}:{metrics.server_port}/metrics", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks = []
    if args.sources:
        client = NtpClient(precision=precision)

        def on_event(event: SystemEvent) -> None:
            if isinstance(event, ClockUpdated) and client.system is not None:
                core.follow(client.system, fallback())
            elif isinstance(event, SystemPeerChanged) and event.source is None:
                core.follow(None, fallback())

        runner = Monitor(client, on_event=on_event)
        for source in args.sources:
            await runner.add_source(source)
        tasks.append(asyncio.ensure_future(runner.run(stop)))
    try:
        await stop.wait()
    finally:
        if service is not None:
            thread, thread_stop = service
            thread_stop.set()
            await asyncio.to_thread(thread.join)
        server.close()
        if metrics is not None:
            await asyncio.to_thread(metrics.shutdown)
        if ke is not None:
            await asyncio.to_thread(ke.close)
        for task in tasks:
            await task
        counters = core.counters
        logger.info(
            "received %d, replied %d, kisses %d, dropped %s",
            counters.received,
            counters.replied,
            counters.kiss_sent,
            counters.dropped,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``lockstep ntp ...`` without loading the other verbs (``python -m lockstep.cli.ntp``)."""
    from lockstep.cli import main as run

    return run(argv, verbs=("ntp",))


if __name__ == "__main__":
    raise SystemExit(main())
