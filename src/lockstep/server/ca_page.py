"""The local certificate authority's root as a phone installs it: ``/ca.crt`` (DER) and ``/ca``, a page
with the SHA-256 fingerprint to compare, a QR code of the download address, and how to install it."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import segno
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from lockstep.server.tls import der, fingerprint

CA_FILE_NAME = "lockstep-local-ca.crt"


@dataclass(frozen=True, slots=True)
class LocalCa:
    """The root (``data/tls/ca.pem``) and the plain-HTTP address a phone downloads it from."""

    certificate: Path
    download_url: str


def _page(ca: LocalCa) -> str:
    qr = segno.make(ca.download_url, error="m").svg_inline(scale=5, border=2)
    url = html.escape(ca.download_url)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Install Lockstep's certificate authority</title></head>
<body>
<h1>Install this server's certificate authority (once per phone)</h1>
<p>Lockstep on your network uses HTTPS with a certificate made by this server's own certificate
authority. Install its root once and the app, its offline mode and "Add to home screen" work.</p>
<p>Scan with the phone's camera, or open <a href="{url}">{url}</a>:</p>
<div data-testid="ca-qr">{qr}</div>
<p>Before you trust it, compare its SHA-256 fingerprint with the one <code>lockstep serve</code> printed:</p>
<p><code data-testid="ca-fingerprint">{html.escape(fingerprint(ca.certificate))}</code></p>
<p><a data-testid="ca-download" href="/ca.crt" download="{CA_FILE_NAME}">Download the certificate</a></p>
<ul>
<li>Android: Settings → Security → Encryption &amp; credentials → Install a certificate → CA certificate.</li>
<li>iPhone: open the download, then Settings → Profile Downloaded → Install; then Settings → General →
About → Certificate Trust Settings → turn on full trust for "Lockstep local CA".</li>
</ul>
<p>This root can vouch only for local names and private addresses (a name constraint), never for a
public website. Remove it from the same settings when you stop using this server.</p>
</body></html>
"""


def ca_routes(ca: LocalCa) -> list[Route]:
    async def page(request: Request) -> Response:
        return HTMLResponse(_page(ca), headers={"cache-control": "no-cache"})

    async def certificate(request: Request) -> Response:
        return Response(
            der(ca.certificate),
            media_type="application/x-x509-ca-cert",
            headers={
                "content-disposition": f'attachment; filename="{CA_FILE_NAME}"',
                "cache-control": "no-cache",
            },
        )

    return [Route("/ca", page), Route("/ca.crt", certificate)]
