"""A forwarding HTTP proxy for apt on a test host whose namespace has loopback only.

Run as its own process (standard library only), stopped by PID::

    python3 tests/apt_proxy.py --netns /run/netns/NAME --listen 127.0.0.1:3142 --allow deb.debian.org:80

The listening socket is made *inside* the host's namespace (the main thread joins it,
binds, and returns); every upstream connection is made afterwards from the machine's own
namespace. So the host reaches the Debian mirror, and nothing else: no veth to the
outside, no routing, nothing listening outside the namespace.

* ``GET http://host/path`` (apt's proxy requests): rewritten to origin form and sent on
  one kept-alive upstream connection per client connection; responses are piped back
  byte for byte, so keep-alive, pipelining and large .debs work without buffering.
* ``CONNECT host:port`` is tunnelled for allowed pairs (https sources).
* Anything not in ``--allow`` gets 403; the listener takes loopback addresses only.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

CLONE_NEWNET = 0x40000000
MAX_HEADER = 64 * 1024
HOP_BY_HOP = {b"proxy-connection", b"proxy-authorization", b"proxy-authenticate"}


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


def listen_in(netns: str, host: str, port: int) -> socket.socket:
    """A listening socket bound in ``netns``; the thread is back in its own namespace after."""
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to listen on {host}: loopback addresses only")
    own, target = os.open("/proc/thread-self/ns/net", os.O_RDONLY), os.open(netns, os.O_RDONLY)
    try:
        setns(target)
        try:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
        finally:
            setns(own)
    finally:
        os.close(own)
        os.close(target)
    return sock


def pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(262144):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock, how in ((target, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


class Client(threading.Thread):
    """One client connection: its requests, in order, to one allowed upstream."""

    def __init__(self, conn: socket.socket, allowed: set[tuple[str, int]], timeout: float) -> None:
        super().__init__(daemon=True)
        self.conn, self.allowed, self.timeout = conn, allowed, timeout
        self.buffer = b""
        self.upstream: socket.socket | None = None
        self.target: tuple[str, int] | None = None
        self.back: threading.Thread | None = None

    def read_head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEADER:
                raise ValueError("request header too large")
            chunk = self.conn.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def read_body(self, length: int) -> bytes:
        while len(self.buffer) < length:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise ConnectionError("client closed inside a request body")
            self.buffer += chunk
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    def refuse(self, status: str, text: str) -> None:
        body = text.encode()
        self.conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                          f"Connection: close\r\n\r\n".encode() + body)

    def connect(self, target: tuple[str, int]) -> socket.socket:
        upstream = socket.create_connection(target, timeout=self.timeout)
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return upstream

    def tunnel(self, uri: str) -> None:
        host, _, port = uri.rpartition(":")
        target = (host.strip("[]").lower(), int(port))
        if target not in self.allowed:
            log(f"CONNECT {uri} -> 403")
            self.refuse("403 Forbidden", f"{uri} is not allowed by this proxy\n")
            return
        upstream = self.connect(target)
        self.conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if self.buffer:
            upstream.sendall(self.buffer)
        up = threading.Thread(target=pipe, args=(self.conn, upstream), daemon=True)
        up.start()
        pipe(upstream, self.conn)
        up.join()
        upstream.close()

    def forward(self, method: str, uri: str, version: str, headers: list[bytes]) -> bool:
        """Send one request upstream; False ends the client connection."""
        url = urlsplit(uri)
        if url.scheme != "http" or not url.hostname:
            self.refuse("400 Bad Request", "only absolute http:// URIs (or CONNECT) are proxied\n")
            return False
        target = (url.hostname.lower(), url.port or 80)
        if target not in self.allowed:
            log(f"{method} {uri} -> 403")
            if self.upstream is None:
                self.refuse("403 Forbidden", f"{target[0]}:{target[1]} is not allowed by this proxy\n")
            return False
        if self.upstream is not None and target != self.target:
            return False  # apt opens one connection per host
        length, kept = 0, []
        for line in headers:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key in HOP_BY_HOP:
                continue
            if key == b"transfer-encoding":
                self.refuse("501 Not Implemented", "chunked request bodies are not supported\n")
                return False
            if key == b"content-length":
                length = int(value.strip())
            kept.append(line)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        request = f"{method} {path} {version}\r\n".encode("latin-1") + b"\r\n".join(kept) + b"\r\n\r\n"
        if length:
            request += self.read_body(length)
        if self.upstream is None:
            self.upstream, self.target = self.connect(target), target
            self.back = threading.Thread(target=pipe, args=(self.upstream, self.conn), daemon=True)
            self.back.start()
        log(f"{method} {uri}")
        self.upstream.sendall(request)
        return True

    def run(self) -> None:
        try:
            self.conn.settimeout(300)
            while (head := self.read_head()) is not None:
                lines = head.split(b"\r\n")
                method, uri, version = lines[0].decode("latin-1").split(" ", 2)
                if method == "CONNECT":
                    self.tunnel(uri)
                    return
                if not self.forward(method, uri, version, [line for line in lines[1:] if line]):
                    return
        except (OSError, ValueError) as err:
            log(f"error: {err}")
        finally:
            if self.upstream is not None:
                try:
                    self.upstream.shutdown(socket.SHUT_WR)  # let pending responses finish
                except OSError:
                    pass
                if self.back is not None:
                    self.back.join(600)
                self.upstream.close()
            self.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--netns", required=True, help="the namespace to listen in (/run/netns/NAME)")
    parser.add_argument("--listen", default="127.0.0.1:3142", help="loopback host:port (default %(default)s)")
    parser.add_argument("--allow", action="append", required=True, help="an allowed upstream host:port (repeatable)")
    parser.add_argument("--timeout", type=float, default=30.0, help="upstream connect timeout")
    args = parser.parse_args()
    allowed = set()
    for item in args.allow:
        host, _, port = item.rpartition(":")
        allowed.add((host.lower(), int(port)))
    host, _, port = args.listen.rpartition(":")
    server = listen_in(args.netns, host.strip("[]"), int(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log(f"listening on {args.listen} in {args.netns}; allowed {sorted(allowed)}")
    try:
        while True:
            conn, _ = server.accept()
            Client(conn, allowed, args.timeout).start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
