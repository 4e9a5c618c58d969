"""Number matching when the networks differ (docs/protocol/linking.md §6.5).

The companion shows a 2-digit number once a primary has inspected its code; a primary whose server says
the companion is on another network asks the person to type it before Link does anything. The number
comes from the code's ``ref`` and ``link_secret``, so both devices compute it and the server, which never
sees the secret, cannot. It turns a one-tap mistake into a deliberate act; a real-time relay can forward
the number too, and the docs say so.
"""

from __future__ import annotations

import hashlib
import hmac

from lockstep.link.qr import LinkCode

_LABEL = b"lockstep/link/number\x00"


def matching_number(code: LinkCode) -> str:
    """``SHA-256("lockstep/link/number" 0x00 || ref || link_secret)``: its first 8 bytes as a big-endian
    integer, modulo 100, as two digits (the modulo bias of 2^64 is negligible)."""
    digest = hashlib.sha256(_LABEL + code.ref + code.link_secret).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 100:02d}"


def number_matches(typed: str, code: LinkCode) -> bool:
    """Whether what the person typed (spaces ignored) is the companion's number."""
    return hmac.compare_digest("".join(typed.split()).encode(), matching_number(code).encode())
