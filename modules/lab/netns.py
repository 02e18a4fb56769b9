"""Network namespaces and loopback addresses for lab and test servers.

Every 127.x address routes to ``lo`` on Linux, but servers that scan interfaces (BIND
does) only listen on addresses configured on one, so each role's address is added to
``lo`` of its namespace and removed again when the role stops.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from mailstack.lab.binaries import binary


def _ip(netns: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    command = [binary("ip"), *args] if netns is None else [binary("ip"), "-n", netns, *args]
    return subprocess.run(command, capture_output=True, text=True)


def exists(name: str) -> bool:
    """True when the named network namespace exists."""
    return Path("/run/netns", name).exists()


def create(name: str, nameserver: str | None = None) -> None:
    """Create a namespace with loopback up; point its resolv.conf at ``nameserver``."""
    if not exists(name):
        result = subprocess.run([binary("ip"), "netns", "add", name], capture_output=True, text=True)
        if result.returncode:
            raise OSError(f"ip netns add {name}: {result.stderr.strip()}")
    _ip(name, "link", "set", "lo", "up")
    if nameserver:
        conf_dir = Path("/etc/netns", name)
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "resolv.conf").write_text(f"nameserver {nameserver}\noptions timeout:2 attempts:2\n")


def delete(name: str) -> None:
    """Remove a namespace and its /etc/netns configuration."""
    if exists(name):
        subprocess.run([binary("ip"), "netns", "del", name], capture_output=True)
    conf_dir = Path("/etc/netns", name)
    if conf_dir.exists():
        for child in conf_dir.iterdir():
            child.unlink()
        conf_dir.rmdir()


def has_address(address: str, netns: str | None = None) -> bool:
    """True when ``address`` is configured on lo (a listening server can bind it)."""
    result = _ip(netns, "-o", "addr", "show", "dev", "lo")
    return f" {address}/" in result.stdout


def add_address(address: str, netns: str | None = None) -> bool:
    """Add ``address``/32 to lo unless present; True when this call added it."""
    if address == "127.0.0.1" or has_address(address, netns):
        return False
    result = _ip(netns, "addr", "add", f"{address}/32", "dev", "lo")
    if result.returncode and "File exists" not in result.stderr:
        raise OSError(f"ip addr add {address}/32 dev lo: {result.stderr.strip()}")
    return result.returncode == 0


def remove_address(address: str, netns: str | None = None) -> None:
    """Remove an address this process added to lo."""
    _ip(netns, "addr", "del", f"{address}/32", "dev", "lo")
