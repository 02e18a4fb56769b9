"""The loopback guard of tests/conftest.py works: the tests cannot leak traffic."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import OffLoopbackTraffic


def test_guard_refuses_off_loopback() -> None:
    """The guard itself: a documentation address is refused before any packet leaves."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(OffLoopbackTraffic):
            sock.sendto(b"x", ("192.0.2.1", 53))
        with pytest.raises(OffLoopbackTraffic):
            sock.connect(("192.0.2.1", 53))


def test_guard_lets_loopback_through() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", ("127.0.0.1", 9))
