"""Errors of the linking core. One root, split by who is to blame (like h11)::

LinkError
├── LinkCodeError                 scanned text is not a usable linking code (§3.3)
│   ├── NotALinkCode
│   ├── MalformedCode
│   ├── UnsupportedVersion
│   └── ForeignOrigin
├── EncodingError                 base64url or JSON that does not parse
├── SignatureError                an envelope that does not verify, or has the wrong shape
├── DeviceListError               a signed device list that is not valid (§4.3)
└── GrantError                    a link grant that cannot be opened or does not check out (§5)
"""

from __future__ import annotations

from lockstep.link.wording import code_refusal


class LinkError(Exception):
    """Root of every error raised by :mod:`lockstep.link`."""


class LinkCodeError(LinkError):
    """Scanned text is not a linking code this device may act on."""


class NotALinkCode(LinkCodeError):
    """The text is not a Lockstep linking URL at all."""

    def __init__(self) -> None:
        super().__init__(code_refusal("not_a_link_code"))


class MalformedCode(LinkCodeError):
    """The text looks like a linking URL but its payload is damaged or truncated."""

    def __init__(self, detail: str) -> None:
        super().__init__(code_refusal("malformed_code", detail=detail))


class UnsupportedVersion(LinkCodeError):
    """The payload's version byte is one this implementation does not speak."""

    def __init__(self, version: int) -> None:
        super().__init__(code_refusal("unsupported_version", version=version))
        self.version = version


class ForeignOrigin(LinkCodeError):
    """The code names another server than the one this primary belongs to (phishing defence)."""

    def __init__(self, code_origin: str, own_origin: str) -> None:
        super().__init__(code_refusal("foreign_origin", origin=code_origin))
        self.code_origin = code_origin
        self.own_origin = own_origin


class EncodingError(LinkError):
    """Bytes or text that do not decode (base64url, UTF-8, JSON)."""


class SignatureError(LinkError):
    """An envelope whose signature does not verify or whose shape is wrong."""


class DeviceListError(LinkError):
    """A device list or certificate that breaks the rules of §4.2 to §4.3."""


class GrantError(LinkError):
    """A link grant that does not open, or whose contents do not check out."""
