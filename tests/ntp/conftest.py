"""Fixtures for the NTP tests (helpers live in ntp_peers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ntp.ntp_peers import Chronyd, free_udp_port, start_chronyd, stop_chronyd


@pytest.fixture
def chronyd_server(tmp_path: Path) -> Iterator[Chronyd]:
    """chronyd serving its local clock at stratum 8 on a free loopback port."""
    port = free_udp_port()
    chronyd = start_chronyd(tmp_path / "chronyd-server", ["local stratum 8", "allow 127.0.0.1"], port=port)
    yield chronyd
    stop_chronyd(chronyd)
