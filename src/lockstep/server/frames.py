"""Parsing WebSocket frames into requests, with a precise ``bad_request`` for anything malformed."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any, NewType

from lockstep.link.encoding import b64u_decode, parse_json
from lockstep.link.envelope import Envelope
from lockstep.link.errors import EncodingError, SignatureError
from lockstep.server.errors import ApiError, ErrorCode

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 65_536

Encoded = NewType("Encoded", str)
"""A frame as the JSON text a socket sends (:func:`encode`): an event for several sockets, or for
other instances, is encoded once and passed on as text."""
Outgoing = dict[str, Any] | Encoded
"""What a connection's outbox takes: a frame, or a frame already encoded."""


def bad_request(message: str) -> ApiError:
    return ApiError(ErrorCode.BAD_REQUEST, message)


@dataclass(frozen=True, slots=True)
class Request:
    """One request frame: ``{"id": int, "op": str, ...fields}``."""

    id: int
    op: str
    fields: dict[str, Any]
    received_ms: float | None = None
    """When the frame arrived (for time.sync's t2), if the reader noted it."""

    @classmethod
    def parse(cls, frame: str, received_ms: float | None = None) -> Request:
        if len(frame.encode("utf-8")) > MAX_FRAME_BYTES:
            raise bad_request(f"frame over {MAX_FRAME_BYTES} bytes")
        try:
            value, bad_number = parse_json(frame)
        except (json.JSONDecodeError, RecursionError) as error:
            raise bad_request("frame is not JSON") from error
        if not isinstance(value, dict):
            raise bad_request("frame must be a JSON object")
        request_id, op = value.get("id"), value.get("op")
        if not isinstance(request_id, int) or isinstance(request_id, bool) or not 0 <= request_id < 2**53:
            raise bad_request("'id' must be a non-negative integer")
        if bad_number is not None:
            raise ApiError(
                ErrorCode.BAD_REQUEST,
                f"numbers must be finite JSON numbers, got {bad_number}",
                request_id=request_id,
            )
        if not isinstance(op, str) or not op:
            raise ApiError(ErrorCode.BAD_REQUEST, "'op' must be a string")
        return cls(request_id, op, value, received_ms)

    def text(self, name: str, *, max_length: int = 256) -> str:
        value = self.fields.get(name)
        if not isinstance(value, str):
            raise bad_request(f"'{name}' must be a string")
        if len(value) > max_length:
            raise bad_request(f"'{name}' is longer than {max_length} characters")
        return value

    def optional_text(self, name: str, *, max_length: int = 256) -> str | None:
        """A text field that may be left out (None), never null or of another type."""
        return None if name not in self.fields else self.text(name, max_length=max_length)

    def binary(self, name: str, *, length: int | None = None, max_length: int = 16_384) -> bytes:
        text = self.text(name, max_length=max_length * 4 // 3 + 4)
        try:
            return b64u_decode(text, length=length, what=f"'{name}'")
        except EncodingError as error:
            raise bad_request(str(error)) from error

    def number(self, name: str) -> float:
        value = self.fields.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise bad_request(f"'{name}' must be a number")
        return float(value)

    def envelope(self, name: str) -> Envelope:
        try:
            return Envelope.from_json(self.fields.get(name))
        except SignatureError as error:
            raise bad_request(f"'{name}': {error}") from error


def reply(request_id: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "result": result}


def error_reply(request_id: int | None, error: ApiError) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": {"code": error.code, "message": error.message}}


def encode(frame: dict[str, Any]) -> Encoded:
    """Compact JSON text for a frame; strict (RFC 8259): never NaN or Infinity.

    Requests are parsed strictly, so a non-finite number here is a bug: the frame becomes an
    ``internal_error`` reply (or is dropped if it was an event) rather than text that is not JSON.
    """
    try:
        return Encoded(json.dumps(frame, separators=(",", ":"), allow_nan=False))
    except ValueError:
        log.exception("a frame with a non-finite number was not sent")
        request_id = frame.get("id")
        return Encoded(
            json.dumps(
                error_reply(
                    request_id if isinstance(request_id, int) else None,
                    ApiError(ErrorCode.INTERNAL_ERROR, "the server failed on this request"),
                ),
                separators=(",", ":"),
            )
        )
