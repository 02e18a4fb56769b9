"""Two kinds of network namespace joined by a cable: a test host and the lab around it.

A real gateway host has a network stack of its own: Postfix listens on every address
(``inet_interfaces = all``) and reaches other hosts through a route. A host booted in a
namespace of its own gets that here, on loopback addresses only: the host's namespace
holds its address (``127.0.116.10``) on ``lo``; the lab's namespace holds everybody
else (DNS, Odoo, the receiving MX, an outside sender); a veth pair joins the two.

Linux treats all of 127.0.0.0/8 as local (``local 127.0.0.0/8 dev lo`` in table
``local``) and refuses 127/8 on other interfaces as martian. Two settings make the cable
carry them: a more specific route for the range in table ``local`` (longest prefix
wins over the /8, the /32 of the namespace's own address still wins over it), and
``route_localnet`` on both ends. Each side then connects from its own address, as real
hosts do, so an SPF check at the receiver sees the gateway's declared address. Nothing
leaves the machine: the pair connects two namespaces this process made.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

from mailstack.lab import netns as lab_netns
from mailstack.lab.binaries import binary

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


def in_netns(netns: str, action: Callable[[], T]) -> T:
    """Run ``action`` on a thread that has joined ``netns``: sockets it creates stay in
    that namespace for their lifetime, so the caller can use them from any thread."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            result.append(action())
        except BaseException as err:  # re-raised in the caller
            failure.append(err)

    thread = threading.Thread(target=run, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def tcp_connect(netns: str, address: str, port: int, *, source: str | None = None, timeout: float = 5.0) -> socket.socket:
    """A TCP connection made inside ``netns`` (from ``source`` when given)."""
    return in_netns(netns, lambda: socket.create_connection((address, port), timeout, (source, 0) if source else None))


def sysctl(netns: str, key: str, value: str) -> None:
    """Set a sysctl of ``netns`` (``/proc/sys/net`` is the opening thread's namespace)."""
    path = "/proc/sys/" + key.replace(".", "/")

    def write() -> None:
        with open(path, "w") as handle:
            handle.write(value)

    in_netns(netns, write)


def ip(*args: str) -> None:
    """Run ``ip ARGS``; an error names the command and ip's message."""
    result = subprocess.run([binary("ip"), *args], capture_output=True, text=True)
    if result.returncode:
        raise OSError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def create(netns: str, addresses: tuple[str, ...] = ()) -> None:
    """A namespace with ``lo`` up and each address (/32) on it."""
    ip("netns", "add", netns)
    ip("-n", netns, "link", "set", "lo", "up")
    for address in addresses:
        ip("-n", netns, "addr", "add", f"{address}/32", "dev", "lo")


def delete(netns: str) -> None:
    """Remove a namespace this process made (its veth ends and /etc/netns/NAME go with it)."""
    lab_netns.delete(netns)


def processes_in(netns: str) -> list[int]:
    """PIDs of the processes inside ``netns`` (left by a test process that died)."""
    try:
        inode = os.stat(f"/run/netns/{netns}").st_ino
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                    pids.append(int(entry))
            except (FileNotFoundError, PermissionError):
                continue
    return pids


def cable(host_netns: str, host_address: str, lab_netns: str, lab_device: str, lab_range: str, lab_source: str) -> None:
    """Join a host's namespace to the lab's: the host reaches ``lab_range`` through
    its ``eth0`` from ``host_address``; the lab reaches ``host_address`` through
    ``lab_device`` from ``lab_source``."""
    ip("link", "add", "eth0", "netns", host_netns, "type", "veth", "peer", "name", lab_device, "netns", lab_netns)
    for netns, device in ((host_netns, "eth0"), (lab_netns, lab_device)):
        for scope in ("all", device):
            sysctl(netns, f"net.ipv4.conf.{scope}.route_localnet", "1")
        ip("-n", netns, "link", "set", device, "up")
    ip("-n", host_netns, "route", "add", lab_range, "dev", "eth0", "table", "local", "src", host_address)
    ip("-n", lab_netns, "route", "add", f"{host_address}/32", "dev", lab_device, "table", "local", "src", lab_source)
