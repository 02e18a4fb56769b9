"""A port nobody uses yet, from this engineer's host range (5360-5379).

Several sessions may run the suite on one machine at once, and named binds with
SO_REUSEPORT, so two servers on one fixed port would both start and split the queries.
A port is free when a plain TCP and UDP bind (without SO_REUSEPORT) both succeed."""

from __future__ import annotations

import random
import socket

LAB_PORTS = range(5360, 5380)


def free_port(address: str, ports: range = LAB_PORTS) -> int:
    candidates = list(ports)
    random.shuffle(candidates)
    for port in candidates:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                tcp.bind((address, port))
                udp.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1} on {address}")
