"""Which names the server answers to, and which pages may open its WebSocket (DNS rebinding, CSWSH).

A DNS-rebinding page at ``http://evil.example:8000`` whose name the attacker points at 127.0.0.1 is, to
the victim's browser, same-origin with the attacker's page: its requests carry ``Host: evil.example``
and ``Origin: http://evil.example:8000``. So a name is accepted only if it is

- the host of a configured origin (the public origin QR codes name, ``--allowed-origin``), or
- an IP address the connection actually arrived on (the socket's local address: what the server
  serves, and a name no attacker can re-point), or
- ``localhost`` on a loopback connection;

and a WebSocket's ``Origin`` (browsers always send one) must be a configured origin, or the origin of
an accepted Host on the scheme the connection uses. Clients without ``Origin`` are not browsers, so no
page is riding them; they still need an accepted Host. Pure: the ASGI guard lives in ``app.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from lockstep.server.client_address import parse_ip

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class HostPolicy:
    origins: frozenset[str]
    """Configured origins, normalised (``scheme://host[:port]``, lowercase, default port omitted)."""
    names: frozenset[str | None]
    """Their host names."""

    @classmethod
    def of(cls, origins: Iterable[str]) -> HostPolicy:
        """From configured origins; ValueError names one that is not ``http(s)://host[:port]``."""
        normalised = set()
        for text in origins:
            origin = origin_of(text)
            if origin is None:
                raise ValueError(f"{text!r} is not an origin like https://chat.example")
            normalised.add(origin)
        names = {split_host(origin.partition("://")[2])[0] for origin in normalised}
        return cls(frozenset(normalised), frozenset(names))

    def host_allowed(self, host: str | None, local_address: str | None) -> bool:
        """Whether a request with this ``Host`` header, arrived on ``local_address``, is for us."""
        name = split_host(host)[0] if host else None
        if not name:
            return False
        if name in self.names:
            return True
        local = parse_ip(local_address) if local_address else None
        named = parse_ip(name.strip("[]"))
        if named is not None:
            return named == local
        return name == "localhost" and local is not None and bool(local.is_loopback)

    def origin_allowed(
        self, origin: str | None, host: str | None, secure: bool, local_address: str | None
    ) -> bool:
        """Whether a WebSocket opened by a page of ``origin`` (None: not a browser) may talk to us."""
        if not self.host_allowed(host, local_address):
            return False
        if origin is None:
            return True
        page = origin_of(origin)
        if page is None:
            return False  # "null" (sandboxed frames, file:) and anything malformed
        if page in self.origins:
            return True
        return page == origin_of(f"{'https' if secure else 'http'}://{host}")


def split_host(host: str) -> tuple[str | None, int | None]:
    """``Host`` header text → (lowercase name, IPv6 in brackets; port or None); (None, None) if malformed."""
    try:
        parts = urlsplit(f"//{host.strip()}")
        port = parts.port
    except ValueError:
        return None, None
    if not parts.hostname or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None, None
    name = parts.hostname.lower()
    return (f"[{name}]" if ":" in name else name), port


def origin_of(text: str) -> str | None:
    """An RFC 6454 origin ``scheme://host[:port]`` (default port omitted), or None if ``text`` is not one."""
    scheme, separator, rest = text.strip().partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in _DEFAULT_PORTS:
        return None
    name, port = split_host(rest.rstrip("/"))
    if name is None:
        return None
    return f"{scheme}://{name}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{name}:{port}"
