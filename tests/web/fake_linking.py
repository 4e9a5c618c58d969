"""The phone's side of linking a companion page that talks to a scripted server (fake_lockstep.py):
codes handed to the page, its QR read as a phone's camera would, grants made by the Python primary
(lockstep.link), and the `auth` the page then sends checked as the server checks it.

    code = show_and_scan(page, fake_server, static_origin)   # the page's first code, read off its QR
    grant(fake_server, primary, code, static_origin)          # approved: the page links and signs in
    primary, code = link_page(page, fake_server, static_origin)   # both, by a new primary
"""

from __future__ import annotations

import io
from typing import Any

import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.encoding import b64u_decode, b64u_encode, key_id
from lockstep.link.envelope import Context, auth_message, verify
from lockstep.link.grant import AccountInfo, approve
from lockstep.link.qr import LinkCode, decode_text

from .fake_lockstep import FakeConnection, FakeServer, now_ms


def send_ref(
    conn: FakeConnection, ref: bytes, index: int = 0, ttl_ms: int = 60_000, last: bool = False
) -> None:
    now = conn.server.now()
    conn.send(
        {
            "event": "link.ref",
            "ref": b64u_encode(ref),
            "issued_at": now,
            "expires_at": now + ttl_ms,
            "server_time": now,
            "index": index,
            "last": last,
        }
    )


def scan(page: Any, origin: str, expect_ref: bytes | None = None, timeout_s: float = 10.0) -> LinkCode:
    """Decodes the page's QR element (as a phone would), waiting for the code with `expect_ref`."""
    deadline = now_ms() + int(timeout_s * 1000)
    while True:
        qr = page.get_by_test_id("qr")
        qr.wait_for(state="visible")
        results = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr.screenshot())))
        if results:
            code = decode_text(results[0].text, own_origin=origin)
            if expect_ref is None or code.ref == expect_ref:
                return code
        assert now_ms() < deadline, "the expected code never showed"
        page.wait_for_timeout(50)


def start_linking(server: FakeServer) -> None:
    server.replies["link.start"] = lambda conn, req: {
        "schedule_ms": [60000, 20000, 20000, 20000, 20000, 20000]
    }


class Primary:
    """A Python primary (lockstep.link) that approves the scanned code, as `lockstep primary scan` would."""

    def __init__(self) -> None:
        self.account_key = Ed25519PrivateKey.generate()
        self.device_key = Ed25519PrivateKey.generate()
        account_public = self.account_key.public_key().public_bytes_raw()
        self.account = AccountInfo(key_id(account_public), "alice", "Alice Liddell", account_public)
        primary = DeviceEntry.new(
            self.device_key.public_key().public_bytes_raw(), Role.PRIMARY, "Phone", now_ms()
        )
        self.devices = DeviceList(self.account.account_id, 1, now_ms(), (primary,))

    def approve(self, code: LinkCode, name: str) -> dict[str, Any]:
        approval = approve(code, self.account_key, self.account, self.devices, name, now_ms())
        self.devices = approval.new_list
        sealed = approval.sealed
        return {
            "ref": b64u_encode(code.ref),
            "enc": b64u_encode(sealed.enc),
            "ciphertext": b64u_encode(sealed.ciphertext),
        }

    def publish(self, devices: DeviceList) -> dict[str, str]:
        self.devices = devices
        return devices.sign(self.account_key).to_json()

    def auth_result(self, device_id: str) -> dict[str, Any]:
        return {
            "account": self.account.to_json(),
            "device_id": device_id,
            "role": "companion",
            "device_list": self.devices.sign(self.account_key).to_json(),
        }


def answer_auth(primary: Primary, code: LinkCode, origin: str) -> Any:
    """An `auth` reply that checks the browser's signature the way the server does (§7.2)."""

    def reply(conn: FakeConnection, request: dict[str, Any]) -> Any:
        if (
            request["device_id"] != key_id(code.device_key)
            or primary.devices.find(request["device_id"]) is None
        ):
            return ("device_unknown", "no such device")
        verify(
            code.device_key,
            Context.AUTH,
            auth_message(conn.challenge, origin),
            b64u_decode(request["signature"]),
        )
        return primary.auth_result(request["device_id"])

    return reply


def show_and_scan(page: Any, server: FakeServer, origin: str, ref: bytes = bytes([7]) * 32) -> LinkCode:
    """Open the companion page, wait for its link.start, hand it ``ref`` and read the code it shows."""
    page.goto(f"{origin}/")
    server.wait_until(lambda: server.connections and "link.start" in server.last.ops(), what="link.start")
    send_ref(server.last, ref)
    return scan(page, origin)


def grant(server: FakeServer, primary: Primary, code: LinkCode, origin: str) -> None:
    """Approve ``code`` as "Work laptop": the page gets the grant, and its `auth` is answered."""
    server.replies["auth"] = answer_auth(primary, code, origin)
    server.last.send({"event": "link.granted", **primary.approve(code, "Work laptop")})


def link_page(page: Any, server: FakeServer, origin: str) -> tuple[Primary, LinkCode]:
    """The companion page linked as "Work laptop" to a new primary's account (once the grant is sent)."""
    start_linking(server)
    primary = Primary()
    code = show_and_scan(page, server, origin)
    grant(server, primary, code, origin)
    return primary, code
