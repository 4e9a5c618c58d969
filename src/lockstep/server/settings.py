"""Server settings: one frozen object, from ``LOCKSTEP_*`` variables and CLI flags, checked up front."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lockstep.calls.turn import TurnServer, check_turn_url
from lockstep.link.errors import LinkCodeError
from lockstep.link.qr import normalise_origin
from lockstep.server.admission import DEADLINE_S, PER_ADDRESS, AdmissionLimits
from lockstep.server.client_address import TrustedProxies
from lockstep.server.context import Network, parse_networks
from lockstep.server.hosts import HostPolicy
from lockstep.server.store.backend import DatabaseUrlError, check_url, sqlite_path, sqlite_url

REDIS_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SHARED_STATE_SCHEMES = ("memory", "redis", "rediss", "unix")
"""URL schemes of --redis: ``memory`` keeps everything in the process (lockstep.server.backends)."""


class SettingsError(ValueError):
    """A setting with a bad value; the message names the setting."""


def default_web_root() -> Path:
    """web/dist of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "web" / "dist"


KIB, MIB, GIB = 1024, 1024 * 1024, 1024 * 1024 * 1024
STORAGE_ENV = {
    "LOCKSTEP_MEDIA_DAILY_BYTES": "media_daily_bytes",
    "LOCKSTEP_MEDIA_STORED_BYTES": "media_stored_bytes",
    "LOCKSTEP_STRANGER_SENDER_BYTES": "stranger_sender_bytes",
    "LOCKSTEP_STRANGER_QUEUE_BYTES": "stranger_queue_bytes",
    "LOCKSTEP_KEY_CLAIMS": "key_claims",
    "LOCKSTEP_KEY_CLAIM_WINDOW": "key_claim_window_s",
    "LOCKSTEP_MIN_FREE_BYTES": "min_free_bytes",
    "LOCKSTEP_MEDIA_UPLOADS_PER_DEVICE": "media_uploads_per_device",
    "LOCKSTEP_SOCKETS_PER_DEVICE": "sockets_per_device",
}
"""Environment variable → :class:`StorageLimits` field (whole numbers)."""
ADMISSION_ENV = {
    "LOCKSTEP_UNAUTHENTICATED_PER_ADDRESS": "unauthenticated_per_address",
    "LOCKSTEP_UNAUTHENTICATED_TOTAL": "unauthenticated_total",
    "LOCKSTEP_UNAUTHENTICATED_DEADLINE": "unauthenticated_deadline_s",
}
"""Environment variable → :class:`Settings` field of the caps on unauthenticated sockets."""


@dataclass(frozen=True, slots=True)
class StorageLimits:
    """Quotas and disk reserves against storage abuse (SECURITY.md, "Limits and their defaults")."""

    media_daily_bytes: int = GIB
    """Media one device may upload per rolling 24 hours."""
    media_stored_bytes: int = 4 * GIB
    """Media of one device kept at once (blobs leave after 30 days)."""
    stranger_sender_bytes: int = 256 * KIB
    """What one account may keep queued for a device whose account never wrote to it."""
    stranger_queue_bytes: int = 4 * MIB
    """What all such accounts together may keep queued for one device."""
    key_claims: int = 10
    """One-time keys one account may take from one device per window; then it gets the fallback key."""
    key_claim_window_s: int = 3600
    min_free_bytes: int = 64 * MIB
    """Below this much free space in the data or media folder, writes that add data are refused."""
    media_uploads_per_device: int = 3
    """Uploads one device may have streaming at once (a partial file each on the shared disk)."""
    sockets_per_device: int = 8
    """Signed-in WebSockets of one device per instance; a new sign-in past it closes the oldest (a
    device needs one; browser tabs of one companion each hold one)."""

    def __post_init__(self) -> None:
        for env_name, name in STORAGE_ENV.items():
            value = getattr(self, name)
            minimum = 0 if name == "min_free_bytes" else 1
            if not isinstance(value, int) or not minimum <= value <= 2**50:
                raise SettingsError(f"{env_name} must be a whole number from {minimum} to 2**50, got {value}")

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: int | None) -> StorageLimits:
        values: dict[str, int] = {}
        for env_name, name in STORAGE_ENV.items():
            if env_name in env:
                try:
                    values[name] = int(env[env_name])
                except ValueError as error:
                    raise SettingsError(f"{env_name} must be a number, got {env[env_name]!r}") from error
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    public_origin: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    web_root: Path = field(default_factory=default_web_root)
    media_max_bytes: int = 100 * 1024 * 1024
    storage: StorageLimits = field(default_factory=StorageLimits)
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    """Reverse proxies whose X-Forwarded-For (or Forwarded) is believed (LOCKSTEP_TRUSTED_PROXIES)."""
    separate_networks: tuple[Network, ...] = ()
    """Networks of their own when deciding "same network" (LOCKSTEP_SEPARATE_NETWORKS, linking.md §6.5)."""
    allowed_origins: tuple[str, ...] = ()
    """More origins (besides the public one) whose names and pages are served (LOCKSTEP_ALLOWED_ORIGINS)."""
    database: str | None = None
    """``sqlite:///path`` or ``postgresql://…`` (LOCKSTEP_DATABASE_URL); None: SQLite in the data folder."""
    unauthenticated_per_address: int = PER_ADDRESS
    unauthenticated_total: int | None = None
    """None: a quarter of the open-file limit, at most 4096 (admission.py)."""
    unauthenticated_deadline_s: float = DEADLINE_S
    media_dir: Path | None = None
    """Encrypted media blobs; default ``<data>/media``. Several instances must share one folder."""
    redis_url: str | None = None
    """Shared state for several instances (``redis://host:6379/0``); none: all in this process."""
    redis_prefix: str = "lockstep"
    """Prefix of every Redis key and channel, so several deployments can share one Redis."""
    drain_seconds: float = 0.0
    """On SIGTERM, how long ``/readyz`` says 503 before the server stops (load balancer notice)."""
    turn_url: str | None = None
    """A coturn for calls, ``turn:host:port`` (LOCKSTEP_TURN_URL); none: host candidates only."""
    turn_secret_file: Path | None = None
    """The file holding coturn's ``static-auth-secret`` (LOCKSTEP_TURN_SECRET_FILE)."""

    def __post_init__(self) -> None:
        try:
            self.admission_limits(open_files=1 << 20)
        except ValueError as error:
            raise SettingsError(f"{', '.join(ADMISSION_ENV)}: {error}") from error
        if self.database is not None:
            try:
                check_url(self.database)
            except DatabaseUrlError as error:
                raise SettingsError(f"--database / LOCKSTEP_DATABASE_URL: {error}") from error
        if not 1024 <= self.media_max_bytes <= 2**40:
            raise SettingsError(f"media_max_bytes must be 1024 to 2**40, got {self.media_max_bytes}")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be 0 to 65535, got {self.port}")
        scheme = urllib.parse.urlsplit(self.redis_url).scheme if self.redis_url else "memory"
        if scheme not in SHARED_STATE_SCHEMES:
            raise SettingsError(f"LOCKSTEP_REDIS_URL: use redis://, rediss:// or unix://, not {scheme}://")
        if not REDIS_PREFIX.fullmatch(self.redis_prefix):
            raise SettingsError(
                f"LOCKSTEP_REDIS_PREFIX must be 1-64 of A-Z a-z 0-9 _ . -, got {self.redis_prefix!r}"
            )
        if not 0 <= self.drain_seconds <= 600:
            raise SettingsError(f"LOCKSTEP_DRAIN_SECONDS must be 0 to 600, got {self.drain_seconds}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("--tls-cert and --tls-key go together")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise SettingsError(f"no such file: {path}")
        if (self.turn_url is None) != (self.turn_secret_file is None):
            raise SettingsError("--turn-url and --turn-secret go together")
        if self.turn_url is not None:
            try:
                check_turn_url(self.turn_url)
            except ValueError as error:
                raise SettingsError(f"--turn-url / LOCKSTEP_TURN_URL: {error}") from error
            self.turn_server()
        if self.public_origin is not None:
            try:
                normalise_origin(self.public_origin)
            except LinkCodeError as error:
                raise SettingsError(
                    f"LOCKSTEP_PUBLIC_ORIGIN must be an http(s) origin such as https://chat.example, "
                    f"not {self.public_origin!r}"
                ) from error

    def turn_server(self) -> TurnServer | None:
        """The coturn calls may use, its secret read from ``turn_secret_file`` (first line, trimmed)."""
        if self.turn_url is None or self.turn_secret_file is None:
            return None
        try:
            secret = self.turn_secret_file.read_text().strip().encode()
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(f"--turn-secret: cannot read {self.turn_secret_file}: {error}") from error
        if len(secret) < 16:
            raise SettingsError(
                f"--turn-secret: {self.turn_secret_file} holds no secret of 16 characters or more"
            )
        return TurnServer(self.turn_url, secret)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def admission_limits(self, open_files: int) -> AdmissionLimits:
        """The caps on unauthenticated sockets for a process that may open ``open_files`` descriptors."""
        total = self.unauthenticated_total or AdmissionLimits.total_for(open_files)
        return AdmissionLimits(self.unauthenticated_per_address, total, self.unauthenticated_deadline_s)

    @property
    def database_url(self) -> str:
        return self.database or sqlite_url(self.data_dir / "lockstep.sqlite3")

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database file, when the database is one."""
        return sqlite_path(self.database_url)

    @property
    def folders(self) -> list[Path]:
        """Local folders the server writes: the data folder, and the SQLite file's if elsewhere."""
        database = self.sqlite_file
        extra = [database.parent] if database is not None and database.parent != self.data_dir else []
        return [self.data_dir, *extra]

    @property
    def media_root(self) -> Path:
        return self.media_dir if self.media_dir is not None else self.data_dir / "media"

    def origin(self, bound_port: int | None = None) -> str:
        """The canonical origin QR codes name: the public one if set, else the address served."""
        if self.public_origin:
            return normalise_origin(self.public_origin)
        scheme = "https" if self.tls else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return normalise_origin(f"{scheme}://{host}:{bound_port or self.port}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        if "LOCKSTEP_HOST" in env:
            values["host"] = env["LOCKSTEP_HOST"]
        if "LOCKSTEP_PORT" in env:
            values["port"] = _number(env, "LOCKSTEP_PORT", int)
        if "LOCKSTEP_DATA" in env:
            values["data_dir"] = Path(env["LOCKSTEP_DATA"])
        if "LOCKSTEP_PUBLIC_ORIGIN" in env:
            values["public_origin"] = env["LOCKSTEP_PUBLIC_ORIGIN"]
        if "LOCKSTEP_MEDIA_MAX_BYTES" in env:
            values["media_max_bytes"] = _number(env, "LOCKSTEP_MEDIA_MAX_BYTES", int)
        if "LOCKSTEP_DATABASE_URL" in env:
            values["database"] = env["LOCKSTEP_DATABASE_URL"]
        if "LOCKSTEP_MEDIA_DIR" in env:
            values["media_dir"] = Path(env["LOCKSTEP_MEDIA_DIR"])
        if env.get("LOCKSTEP_REDIS_URL"):
            values["redis_url"] = env["LOCKSTEP_REDIS_URL"]
        if "LOCKSTEP_REDIS_PREFIX" in env:
            values["redis_prefix"] = env["LOCKSTEP_REDIS_PREFIX"]
        if "LOCKSTEP_DRAIN_SECONDS" in env:
            values["drain_seconds"] = _number(env, "LOCKSTEP_DRAIN_SECONDS", float)
        if env.get("LOCKSTEP_TURN_URL"):
            values["turn_url"] = env["LOCKSTEP_TURN_URL"]
        if env.get("LOCKSTEP_TURN_SECRET_FILE"):
            values["turn_secret_file"] = Path(env["LOCKSTEP_TURN_SECRET_FILE"])
        if "LOCKSTEP_WEB_ROOT" in env:
            values["web_root"] = Path(env["LOCKSTEP_WEB_ROOT"])
        storage_overrides = overrides.pop("storage", None)
        values["storage"] = StorageLimits.from_env(
            env, **(storage_overrides if isinstance(storage_overrides, dict) else {})
        )
        origins = overrides.pop("allowed_origins", None) or _words(env.get("LOCKSTEP_ALLOWED_ORIGINS", ""))
        try:
            values["allowed_origins"] = tuple(sorted(HostPolicy.of(origins).origins))  # type: ignore[arg-type]
        except ValueError as error:
            raise SettingsError(f"--allowed-origin / LOCKSTEP_ALLOWED_ORIGINS: {error}") from error
        for env_name, name in ADMISSION_ENV.items():
            if env_name in env:
                number = float if name.endswith("_s") else int
                try:
                    values[name] = number(env[env_name])
                except ValueError as error:
                    raise SettingsError(f"{env_name} must be a number, got {env[env_name]!r}") from error
        separate = overrides.pop("separate_networks", None) or _words(
            env.get("LOCKSTEP_SEPARATE_NETWORKS", "")
        )
        try:
            values["separate_networks"] = parse_networks(separate)  # type: ignore[arg-type]
        except ValueError as error:
            raise SettingsError(f"--separate-network / LOCKSTEP_SEPARATE_NETWORKS: {error}") from error
        proxies = overrides.pop("trusted_proxies", None) or _words(env.get("LOCKSTEP_TRUSTED_PROXIES", ""))
        header = overrides.pop("proxy_header", None) or env.get("LOCKSTEP_PROXY_HEADER", "x-forwarded-for")
        try:
            values["proxies"] = TrustedProxies.parse(proxies, str(header))  # type: ignore[arg-type]
        except ValueError as error:
            raise SettingsError(f"--trusted-proxy / LOCKSTEP_TRUSTED_PROXIES: {error}") from error
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _number(env: Mapping[str, str], name: str, kind: Callable[[str], float]) -> float:
    try:
        return kind(env[name])
    except ValueError as error:
        raise SettingsError(f"{name} must be a number, got {env[name]!r}") from error


def _words(text: str) -> list[str]:
    """A list setting: items separated by commas and/or white space."""
    return text.replace(",", " ").split()
