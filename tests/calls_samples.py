"""Session descriptions and candidates for the call tests: the shapes aiortc and Chromium produce."""

from __future__ import annotations

from lockstep.link.encoding import b64u_decode, b64u_encode

FINGERPRINT = ":".join(["AB"] * 32)


def sdp(
    media: str = "audio", candidate: str = "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"
) -> str:
    """A minimal but complete WebRTC description: one ``media`` section, ICE credentials, fingerprint."""
    return "\r\n".join(
        [
            "v=0",
            "o=- 3912345678 3912345678 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0",
            "a=msid-semantic:WMS *",
            f"m={media} 40000 UDP/TLS/RTP/SAVPF 111",
            "c=IN IP4 127.0.0.1",
            "a=sendrecv",
            "a=mid:0",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
            f"a={candidate}",
            "a=end-of-candidates",
            "a=ice-ufrag:Xy3Z",
            "a=ice-pwd:0123456789abcdefghijkl",
            f"a=fingerprint:sha-256 {FINGERPRINT}",
            "a=setup:actpass",
            "",
        ]
    )


CHROMIUM_CANDIDATES = [
    "candidate:842163049 1 udp 1677729535 203.0.113.7 56143 typ srflx raddr 0.0.0.0 rport 0 generation 0"
    " ufrag sK6p network-cost 999",
    "candidate:1467250027 1 udp 2122260223 127.0.0.1 46243 typ host generation 0 ufrag sK6p network-id 1",
    "candidate:3499337366 1 udp 2122262783 a2cb8cd4-32e3-4c1a-b2a5-1c6a3c2a9e10.local 52317 typ host"
    " generation 0 ufrag sK6p network-id 2",
    "candidate:1 1 tcp 1518280447 ::1 9 typ host tcptype active generation 0",
    "candidate:2 1 udp 41885439 127.0.0.1 3478 typ relay raddr 127.0.0.1 rport 51000",
]


def flip_a_byte(ciphertext: str) -> str:
    """What a relay that tampers does to a payload: one bit of the middle byte flipped."""
    raw = bytearray(b64u_decode(ciphertext))
    raw[len(raw) // 2] ^= 0x01
    return b64u_encode(bytes(raw))
