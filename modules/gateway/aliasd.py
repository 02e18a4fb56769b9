"""mailstack-aliasd: tell Postfix at RCPT time which addresses Odoo routes.

Postfix asks it for every recipient of a relay domain (``relay_recipient_maps =
socketmap:inet:127.0.0.1:10027:odoo``, the socketmap protocol: netstrings
``odoo <address>`` → ``OK``/``NOTFOUND``/``TEMP``), so mail Odoo would refuse is refused
before DATA — no bounce from the gateway later (no backscatter).

What Odoo 17 routes (read from its ``mail.thread.message_route`` and
``_detect_is_bounce``, /work/research/odoo17-spec.md §3–§4): an alias' full address
``alias_full_name`` compared exactly with the lowercased recipient — no ``+detail`` is
stripped, so ``sales+tag@`` is refused unless an alias of that very name exists; an
alias with ``alias_incoming_local`` by its local part on any relay domain; each alias
domain's ``bounce_email`` (Odoo processes bounces) and ``catchall_email`` (replies to
Odoo's mail, threaded by References; a direct write Odoo bounces itself); and
postmaster and abuse (RFC 5321 §4.5.1, RFC 2142). Not the ``default_from`` (``notifications@``): Odoo routes
it only as a reply and raises "No possible route" for anything else, which would end
as a Postfix bounce (replies go to the Reply-To Odoo sets: the alias or the catchall).

Odoo's answer is cached: renewed every ``refresh`` seconds (60), and at once on a miss
when the cache is older than ``retry`` seconds (10) — so an alias created in Odoo is
accepted within 10 s, a removed one refused within 60 s, and a dictionary attack costs
Odoo at most one query per 10 s. When Odoo cannot be asked (down, timeout, refused
credentials) the stack's static list decides what is certainly wanted (``OK``: the
mailgate queues it until Odoo is back) and everything else gets ``TEMP`` — a 4xx, so
the sender retries: never acceptance of everything, never a bounce. With ``source =
static`` the static list is the whole truth (``NOTFOUND`` for the rest).

Like the mailgate, this file uses the standard library only: it is copied alone to the
gateway host and run there by the system Python (a systemd service).
"""

from __future__ import annotations

import argparse
import configparser
import os
import socket
import socketserver
import ssl
import stat
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAP_NAME = "odoo"
MAX_REQUEST = 1024
REQUIRED_LOCAL_PARTS = ("postmaster", "abuse")


@dataclass(frozen=True)
class Config:
    """Where Odoo is, how we log in, what to fall back on."""

    listen: tuple[str, int]
    domains: tuple[str, ...]
    static: frozenset[str]
    source: str = "odoo"
    url: str = ""
    database: str = ""
    uid: int | None = 2
    login: str | None = None
    password: str = field(default="", repr=False)
    refresh: float = 60.0
    retry: float = 10.0
    timeout: float = 10.0


class Unreachable(Exception):
    """Odoo could not be asked (network, HTTP, fault, credentials)."""


def _proxy(config: Config, service: str) -> xmlrpc.client.ServerProxy:
    url = f"{config.url.rstrip('/')}/xmlrpc/2/{service}"
    timeout = config.timeout

    class Transport(xmlrpc.client.SafeTransport if url.startswith("https://") else xmlrpc.client.Transport):  # type: ignore[misc]
        def make_connection(self, host: object) -> object:
            connection = super().make_connection(host)
            connection.timeout = timeout
            return connection

    transport = Transport(context=ssl.create_default_context()) if url.startswith("https://") else Transport()
    return xmlrpc.client.ServerProxy(url, transport=transport, allow_none=True)


def fetch(config: Config) -> frozenset[str]:
    """Every address Odoo routes on the relay domains, asked over XML-RPC."""
    try:
        uid: Any = config.uid
        if config.login:
            uid = _proxy(config, "common").authenticate(config.database, config.login, config.password, {})
            if not uid:
                raise Unreachable(f"Odoo refused the login {config.login!r}")
        objects = _proxy(config, "object")

        def call(model: str, method: str, args: list[object], kwargs: dict[str, object]) -> object:
            return objects.execute_kw(config.database, uid, config.password, model, method, args, kwargs)

        aliases = call("mail.alias", "search_read", [[["alias_name", "!=", False]]],
                       {"fields": ["alias_name", "alias_full_name", "alias_incoming_local"]})
        domains = call("mail.alias.domain", "search_read", [[]], {"fields": ["bounce_email", "catchall_email"]})
    except Unreachable:
        raise
    except xmlrpc.client.Fault as fault:
        raise Unreachable(f"Odoo fault {fault.faultCode}: {str(fault.faultString).strip().splitlines()[-1][:200] if fault.faultString else ''}") from None
    except (OSError, xmlrpc.client.Error, ValueError) as err:
        raise Unreachable(f"{type(err).__name__}: {err}"[:200]) from None
    return routed(aliases, domains, config.domains)  # type: ignore[arg-type]


def routed(aliases: list[dict[str, object]], domains: list[dict[str, object]], relay_domains: Sequence[str]) -> frozenset[str]:
    """The addresses Odoo routes, from its ``mail.alias`` and ``mail.alias.domain`` records."""
    found: set[str] = set()
    for alias in aliases:
        full = alias.get("alias_full_name")
        if isinstance(full, str) and "@" in full:
            found.add(full)  # compared as stored: Odoo 17 does not lowercase domain names
        name = alias.get("alias_name")
        if alias.get("alias_incoming_local") and isinstance(name, str):
            found.update(f"{name}@{domain}" for domain in relay_domains)
    for domain in domains:
        for key in ("bounce_email", "catchall_email"):
            value = domain.get(key)
            if isinstance(value, str) and "@" in value:
                found.add(value)
    found.update(f"{local}@{domain}" for local in REQUIRED_LOCAL_PARTS for domain in relay_domains)
    return frozenset(found)


class Aliases:
    """The cached answer of Odoo and the decision per address."""

    def __init__(self, config: Config, fetcher: Callable[[Config], frozenset[str]] = fetch, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.fetcher, self.clock = config, fetcher, clock
        self.known: frozenset[str] | None = None
        self.fetched_at = float("-inf")
        self.failed_at = float("-inf")
        self.error = ""
        self.lock = threading.Lock()

    def _refresh(self, now: float) -> None:
        try:
            self.known = self.fetcher(self.config)
            self.fetched_at, self.error = now, ""
        except Unreachable as err:
            self.failed_at = now
            if err.args[0] != self.error:
                log(f"cannot ask Odoo, deciding from the static list: {err}")
            self.error = str(err)

    def decide(self, address: str) -> tuple[str, str]:
        """``("OK"|"NOTFOUND"|"TEMP", reason)`` for one recipient."""
        address = address.strip().lower()
        if self.config.source == "static":
            return ("OK", "") if address in self.config.static else ("NOTFOUND", "")
        with self.lock:
            now = self.clock()
            stale = now - self.fetched_at >= self.config.refresh
            missing = self.known is not None and address not in self.known and now - self.fetched_at >= self.config.retry
            retry_due = now - self.failed_at >= self.config.retry
            if (stale or missing) and retry_due:
                self._refresh(now)
            fresh = self.known is not None and not self.error and now - self.fetched_at < self.config.refresh + self.config.retry
            if fresh:
                assert self.known is not None
                return ("OK", "") if address in self.known else ("NOTFOUND", "")
            if address in self.config.static or (self.known is not None and address in self.known):
                return "OK", ""
            return "TEMP", "4.3.0 Odoo cannot be asked whether it routes this address; try again later"


def netstring(text: str) -> bytes:
    data = text.encode("utf-8")
    return str(len(data)).encode() + b":" + data + b","


def read_netstring(stream: socket.socket, buffer: bytearray) -> str | None:
    """One netstring from the connection (None at EOF); ValueError when malformed."""
    while b":" not in buffer:
        chunk = stream.recv(4096)
        if not chunk:
            return None
        buffer += chunk
        if len(buffer) > MAX_REQUEST + 10:
            raise ValueError("request too long")
    length_text, _, _ = bytes(buffer).partition(b":")
    if not length_text.isdigit() or int(length_text) > MAX_REQUEST:
        raise ValueError("bad netstring length")
    needed = len(length_text) + 1 + int(length_text) + 1
    while len(buffer) < needed:
        chunk = stream.recv(4096)
        if not chunk:
            return None
        buffer += chunk
    frame = bytes(buffer[:needed])
    del buffer[:needed]
    if not frame.endswith(b","):
        raise ValueError("netstring without ','")
    return frame[len(length_text) + 1:-1].decode("utf-8", "replace")


class Handler(socketserver.BaseRequestHandler):
    """One Postfix connection: many requests, one reply each (socketmap_table(5))."""

    server: Server

    def handle(self) -> None:
        buffer = bytearray()
        self.request.settimeout(300)
        while True:
            try:
                request = read_netstring(self.request, buffer)
            except (ValueError, OSError):
                return
            if request is None:
                return
            name, _, key = request.partition(" ")
            if name != MAP_NAME:
                reply = f"PERM unknown map {name[:40]}"
            else:
                status, reason = self.server.aliases.decide(key)
                reply = {"OK": "OK OK", "NOTFOUND": "NOTFOUND "}.get(status, f"{status} {reason}")
            try:
                self.request.sendall(netstring(reply))
            except OSError:
                return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    aliases: Aliases


def log(text: str) -> None:
    sys.stderr.write(f"mailstack-aliasd: {text}\n")
    sys.stderr.flush()


def read_password(path: str) -> str:
    info = os.stat(path)
    if info.st_mode & (stat.S_IRWXO | stat.S_IWGRP):
        raise SystemExit(f"mailstack-aliasd: password file {path} is accessible to others (chmod 0600 or 0640)")
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip("\r\n")


def load_config(path: str) -> Config:
    """The ``[aliasd]`` section: listen, domains, static_file, source, url, database,
    uid|login, password_file, refresh, retry, timeout."""
    parser = configparser.ConfigParser(interpolation=None)
    with open(path, encoding="utf-8") as handle:
        parser.read_file(handle)
    values = parser["aliasd"]
    host, _, port = values.get("listen", "127.0.0.1:10027").rpartition(":")
    with open(values["static_file"], encoding="utf-8") as handle:
        # Postfix's relay_recipients: "address<TAB>OK" lines, comments with '#'.
        static = frozenset(line.split()[0].lower() for line in handle if line.strip() and not line.lstrip().startswith("#"))
    source = values.get("source", "odoo")
    if source not in ("odoo", "static"):
        raise SystemExit(f"mailstack-aliasd: source must be odoo or static, not {source!r}")
    password = read_password(values["password_file"]) if source == "odoo" else ""
    return Config(
        listen=(host, int(port)),
        domains=tuple(d.strip().lower() for d in values.get("domains", "").split(",") if d.strip()),
        static=static, source=source, url=values.get("url", ""), database=values.get("database", ""),
        uid=int(values["uid"]) if values.get("uid") else None, login=values.get("login") or None, password=password,
        refresh=float(values.get("refresh", "60")), retry=float(values.get("retry", "10")), timeout=float(values.get("timeout", "10")),
    )


def serve(config: Config, fetcher: Callable[[Config], frozenset[str]] = fetch) -> Server:
    """A bound (not yet serving) server."""
    server = Server(config.listen, Handler)
    server.aliases = Aliases(config, fetcher)
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailstack-aliasd", description="Postfix socketmap of the addresses Odoo routes.")
    parser.add_argument("--config", required=True, help="INI file with an [aliasd] section")
    parser.add_argument("--ready-file", help="written with the bound port once listening (tests)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    server = serve(config)
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()} {server.server_address[1]}\n")
        os.replace(args.ready_file + ".tmp", args.ready_file)
    log(f"listening on {config.listen[0]}:{server.server_address[1]}, source {config.source}, {len(config.static)} static addresses")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
