"""`lockstep serve`: run the server (SQLite or PostgreSQL storage, the web app, the WebSocket API)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from lockstep import __version__
from lockstep.cli import CommandError
from lockstep.server.admission import DEADLINE_S, PER_ADDRESS
from lockstep.server.settings import STORAGE_ENV, StorageLimits

STORAGE_HELP = {
    "media_daily_bytes": "media bytes one device may upload per 24 hours",
    "media_stored_bytes": "media bytes of one device kept at once",
    "stranger_sender_bytes": "bytes one account may queue for a device whose account never wrote to it",
    "stranger_queue_bytes": "bytes all such accounts together may queue for one device",
    "key_claims": "one-time keys one account may take from one device per window",
    "key_claim_window_s": "that window, in seconds",
    "min_free_bytes": "free disk space below which writes that add data are refused",
    "media_uploads_per_device": "media uploads one device may have streaming at once",
    "sockets_per_device": "signed-in connections of one device; a new one past it closes the oldest",
}


def storage_flag(env_name: str) -> str:
    """LOCKSTEP_MEDIA_DAILY_BYTES → --media-daily-bytes."""
    return "--" + env_name.removeprefix("LOCKSTEP_").lower().replace("_", "-")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run the Lockstep server")
    parser.add_argument("--host", help="address to listen on (LOCKSTEP_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (LOCKSTEP_PORT; default 8000)")
    parser.add_argument("--data", type=Path, help="data folder (LOCKSTEP_DATA; default ./data)")
    parser.add_argument(
        "--database",
        help="sqlite:///path or postgresql://user@host:port/db (LOCKSTEP_DATABASE_URL; "
        "default: SQLite in the data folder)",
    )
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this PEM certificate")
    parser.add_argument("--tls-key", type=Path, help="... and this PEM private key")
    parser.add_argument(
        "--public-origin", help="the origin QR codes name, e.g. https://chat.example (LOCKSTEP_PUBLIC_ORIGIN)"
    )
    parser.add_argument(
        "--lan",
        action="store_true",
        help="also serve HTTPS on this machine's LAN address for phones (self-signed unless --tls-cert)",
    )
    parser.add_argument("--lan-port", type=int, default=8443, help="HTTPS port for --lan (default 8443)")
    parser.add_argument(
        "--lan-ca-port",
        type=int,
        default=8080,
        help="plain-HTTP port for --lan where phones download the local certificate authority's root "
        "(/ca, /ca.crt; nothing else is served there; default 8080)",
    )
    parser.add_argument(
        "--media-max-bytes",
        type=int,
        help="largest encrypted media upload (LOCKSTEP_MEDIA_MAX_BYTES; default 100 MiB)",
    )
    for env_name, name in STORAGE_ENV.items():
        parser.add_argument(
            storage_flag(env_name),
            type=int,
            dest=name,
            metavar="N",
            help=f"{STORAGE_HELP[name]} ({env_name}; default {getattr(StorageLimits(), name)})",
        )
    parser.add_argument(
        "--unauthenticated-per-address",
        type=int,
        metavar="N",
        help="sockets one client address may hold before authenticating "
        f"(LOCKSTEP_UNAUTHENTICATED_PER_ADDRESS; default {PER_ADDRESS})",
    )
    parser.add_argument(
        "--unauthenticated-total",
        type=int,
        metavar="N",
        help="unauthenticated sockets in all before the oldest is closed "
        "(LOCKSTEP_UNAUTHENTICATED_TOTAL; default a quarter of the open-file limit, at most 4096)",
    )
    parser.add_argument(
        "--unauthenticated-deadline",
        type=float,
        metavar="SECONDS",
        help="a socket that neither authenticates nor starts linking is closed after this "
        f"(LOCKSTEP_UNAUTHENTICATED_DEADLINE; default {DEADLINE_S:g})",
    )
    parser.add_argument(
        "--allowed-origin",
        action="append",
        metavar="ORIGIN",
        help="another origin (e.g. http://box.lan:8000) whose name and pages this server answers, besides "
        "the public origin and the addresses it listens on; repeatable (LOCKSTEP_ALLOWED_ORIGINS)",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="CIDR",
        help="a reverse proxy (address or CIDR block) whose X-Forwarded-For is believed; repeatable "
        "(LOCKSTEP_TRUSTED_PROXIES; default none: client addresses are always the TCP peer)",
    )
    parser.add_argument(
        "--separate-network",
        action="append",
        metavar="CIDR",
        help="addresses (or a CIDR block) that are a network of their own: a companion there is never "
        "'same network' as a phone outside it, so the phone asks for the number (a VPN range, a guest "
        "Wi-Fi); repeatable (LOCKSTEP_SEPARATE_NETWORKS)",
    )
    parser.add_argument(
        "--proxy-header",
        choices=["x-forwarded-for", "forwarded"],
        help="which header the trusted proxies write (LOCKSTEP_PROXY_HEADER; default x-forwarded-for)",
    )
    parser.add_argument(
        "--media-dir",
        type=Path,
        help="folder of encrypted media blobs (LOCKSTEP_MEDIA_DIR; default DATA/media); "
        "several instances must share one",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="Redis for state shared by several instances, e.g. redis://127.0.0.1:6379/0 "
        "(LOCKSTEP_REDIS_URL; default: none, everything in this process)",
    )
    parser.add_argument(
        "--redis-prefix",
        help="prefix of this deployment's Redis keys and channels (LOCKSTEP_REDIS_PREFIX; default lockstep)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        help="on SIGTERM, answer /readyz with 503 this long before stopping (LOCKSTEP_DRAIN_SECONDS; "
        "default 0)",
    )
    parser.add_argument(
        "--turn-url",
        metavar="URL",
        help="a coturn for calls through NAT, turn:host:port; devices get short-lived credentials for it and "
        "use it for STUN too (LOCKSTEP_TURN_URL; default: none, calls use host candidates only)",
    )
    parser.add_argument(
        "--turn-secret",
        type=Path,
        metavar="FILE",
        help="file holding the static-auth-secret coturn is started with (use-auth-secret) "
        "(LOCKSTEP_TURN_SECRET_FILE)",
    )
    parser.add_argument(
        "--lan-host",
        default="0.0.0.0",  # noqa: S104 - phones on the LAN must reach it
        help="address the --lan listener binds (default: all)",
    )
    parser.set_defaults(handler=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    from lockstep.server.app import create_ca_app
    from lockstep.server.ca_page import LocalCa
    from lockstep.server.disk import DiskProblem, check_folder
    from lockstep.server.errors import StorageError, Unavailable
    from lockstep.server.runner import Listener, serve
    from lockstep.server.settings import Settings, SettingsError
    from lockstep.server.store import redact
    from lockstep.server.tls import ensure_certificate, fingerprint, lan_addresses

    try:
        settings = Settings.from_env(
            os.environ,
            host=args.host,
            port=args.port,
            data_dir=args.data,
            public_origin=args.public_origin,
            tls_cert=None if args.lan else args.tls_cert,
            tls_key=None if args.lan else args.tls_key,
            media_max_bytes=args.media_max_bytes,
            storage={name: getattr(args, name) for name in STORAGE_ENV.values()},
            allowed_origins=args.allowed_origin,
            unauthenticated_per_address=args.unauthenticated_per_address,
            unauthenticated_total=args.unauthenticated_total,
            unauthenticated_deadline_s=args.unauthenticated_deadline,
            trusted_proxies=args.trusted_proxy,
            separate_networks=args.separate_network,
            proxy_header=args.proxy_header,
            database=args.database,
            media_dir=args.media_dir,
            redis_url=args.redis,
            redis_prefix=args.redis_prefix,
            drain_seconds=args.drain_seconds,
            turn_url=args.turn_url,
            turn_secret_file=args.turn_secret,
        )
    except SettingsError as error:
        raise CommandError(str(error)) from error
    reserve = settings.storage.min_free_bytes
    try:  # before saying "running": a folder that cannot be written is a one-line refusal
        database = settings.sqlite_file
        for folder, what in zip(settings.folders, ("data", "database"), strict=False):
            here = database is not None and database.parent == folder
            files = [database.name + suffix for suffix in ("", "-wal", "-shm")] if database and here else []
            check_folder(folder, what, reserve, files=files)
        check_folder(settings.media_root, "media", reserve)
    except DiskProblem as error:
        raise CommandError(str(error)) from error
    listeners = [Listener(settings.host, settings.port, settings.tls_cert, settings.tls_key)]
    origin = settings.origin()
    local_ca: LocalCa | None = None
    lines = [
        f"Lockstep {__version__} is running. Database: {redact(settings.database_url)}, "
        f"media: {settings.media_root}"
    ]
    if settings.redis_url:
        lines.append("  Shared state (several instances): Redis")
    if settings.turn_url:
        lines.append(f"  Calls relay through {settings.turn_url}")
    if args.lan:
        lan = lan_addresses()
        phone_host = lan[0] if lan else "127.0.0.1"
        lines.append(f"  On this computer (shows the QR code):  {listeners[0].url()}/")
        if args.tls_cert and args.tls_key:
            cert, key = args.tls_cert, args.tls_key
        else:
            cert, key = ensure_certificate(settings.data_dir / "tls", [*lan, "127.0.0.1", "localhost"])
            ca_cert = settings.data_dir / "tls" / "ca.pem"
            local_ca = LocalCa(ca_cert, f"http://{phone_host}:{args.lan_ca_port}/ca.crt")
            listeners.append(Listener(args.lan_host, args.lan_ca_port, app=create_ca_app(local_ca)))
            lines += [
                "  Once per phone, install this server's certificate authority: open "
                f"http://{phone_host}:{args.lan_ca_port}/ca on the phone (or scan the QR code at "
                f"{listeners[0].url()}/ca),",
                f"  and install it only if its SHA-256 fingerprint is {fingerprint(ca_cert)}",
            ]
        listeners.insert(1, Listener(args.lan_host, args.lan_port, cert, key))
        origin = settings.public_origin or f"https://{phone_host}:{args.lan_port}"
        lines.append(f"  On your phone, same Wi-Fi (primary):    https://{phone_host}:{args.lan_port}/app")
        if not lan:
            lines.append("  (no LAN address found: phones cannot reach this machine)")
    else:
        lines.append(
            f"  Open {listeners[0].url()}/ (companion page) and {listeners[0].url()}/app (primary app)"
        )
    lines.append(f"  QR codes name this server as {origin}")
    try:
        asyncio.run(serve(settings, origin, listeners, "\n".join(lines), local_ca))
    except (StorageError, Unavailable) as error:  # database unreachable, its schema too new, ...
        raise CommandError(str(error)) from error
    return 0
