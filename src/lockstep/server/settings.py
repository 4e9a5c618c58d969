"""Server settings: one frozen object, from ``LOCKSTEP_*`` variables and CLI flags, checked up front."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lockstep.link.errors import LinkCodeError
from lockstep.link.qr import normalise_origin


class SettingsError(ValueError):
    """A setting with a bad value; the message names the setting."""


def default_web_root() -> Path:
    """web/dist of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "web" / "dist"


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

    def __post_init__(self) -> None:
        if not 1024 <= self.media_max_bytes <= 2**40:
            raise SettingsError(f"media_max_bytes must be 1024 to 2**40, got {self.media_max_bytes}")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be 0 to 65535, got {self.port}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("--tls-cert and --tls-key go together")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise SettingsError(f"no such file: {path}")
        if self.public_origin is not None:
            try:
                normalise_origin(self.public_origin)
            except LinkCodeError as error:
                raise SettingsError(f"LOCKSTEP_PUBLIC_ORIGIN: {error}") from error

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def database(self) -> Path:
        return self.data_dir / "lockstep.sqlite3"

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
            try:
                values["port"] = int(env["LOCKSTEP_PORT"])
            except ValueError as error:
                raise SettingsError(
                    f"LOCKSTEP_PORT must be a number, got {env['LOCKSTEP_PORT']!r}"
                ) from error
        if "LOCKSTEP_DATA" in env:
            values["data_dir"] = Path(env["LOCKSTEP_DATA"])
        if "LOCKSTEP_PUBLIC_ORIGIN" in env:
            values["public_origin"] = env["LOCKSTEP_PUBLIC_ORIGIN"]
        if "LOCKSTEP_MEDIA_MAX_BYTES" in env:
            try:
                values["media_max_bytes"] = int(env["LOCKSTEP_MEDIA_MAX_BYTES"])
            except ValueError as error:
                raise SettingsError(
                    f"LOCKSTEP_MEDIA_MAX_BYTES must be a number, got {env['LOCKSTEP_MEDIA_MAX_BYTES']!r}"
                ) from error
        if "LOCKSTEP_WEB_ROOT" in env:
            values["web_root"] = Path(env["LOCKSTEP_WEB_ROOT"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
