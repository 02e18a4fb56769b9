"""Fixtures of the check-suite tests: one real BIND for the session, serving
``tests.check_zones``, and a UDP socket that swallows queries (the timeout case).

Import the fixtures into a test module with ``from tests.checks_fixtures import dns_lab``.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import random
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailstack import plan as planning
from mailstack.checks.dns.resolver import Resolver, Server
from mailstack.checks.engine import registry, runner
from mailstack.checks.engine.context import CheckContext, HttpsOptions, SmtpOptions
from mailstack.checks.engine.finding import Finding, Status
from mailstack.config.stack import from_config
from mailstack.core.model import MailDomain
from mailstack.lab import netns
from mailstack.lab.bind import BindServer
from tests import check_zones as z
from tests import standards_zones
from tests.servers import require_binary, require_root


@dataclass
class DnsLab:
    bind: BindServer
    keys: z.Keys
    port: int

    def resolver(self, timeout: float = 2.0) -> Resolver:
        return Resolver((Server(z.BIND_ADDRESS, self.port),), timeout)

    def run_resolver(self, timeout: float = 2.0) -> Resolver:
        """The resolver a check run gets (``mailstack check`` caches per run)."""
        return self.resolver(timeout).cached()

    @property
    def nameserver(self) -> str:
        return f"{z.BIND_ADDRESS}:{self.port}"


def _free_port() -> tuple[int, socket.socket]:
    """A port of our range free on both addresses (several test runs may share the
    host); returns it with the swallowing socket already bound on the dead address."""
    for port in range(z.BIND_PORT, z.BIND_PORT + 20):
        swallow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probes = [socket.socket(socket.AF_INET, kind) for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)]
        try:
            swallow.bind((z.DEAD_ADDRESS, port))
            for probe in probes:
                probe.bind((z.BIND_ADDRESS, port))
        except OSError:
            swallow.close()
            continue
        finally:
            for probe in probes:
                probe.close()
        return port, swallow
    raise OSError("no free port in 5300-5319 for the check-suite BIND")


_shared: DnsLab | None = None
_users = 0
_cleanup = contextlib.ExitStack()

#: Test runs of several engineers may share this host; each holds this lock shared while
#: its BIND uses 127.0.10.1, and only the last one (exclusive without waiting) removes
#: the address: removing it under a running named silences that named.
ADDRESS_LOCK = "/tmp/mschk-dns-tests.lock"


@contextlib.contextmanager
def _shared_address(address: str) -> Iterator[None]:
    with open(ADDRESS_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        netns.add_address(address)  # ours, not the BindServer's: it must not remove it
        try:
            yield
        finally:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                netns.remove_address(address)
            except BlockingIOError:
                pass  # another run still serves on it; it removes the address when done


def _start(base: Path) -> DnsLab:
    keys = z.make_keys()
    _cleanup.enter_context(_shared_address(z.BIND_ADDRESS))
    port, swallow = _free_port()  # never read: every query delegated there times out
    _cleanup.callback(swallow.close)
    bind = BindServer(base, z.BIND_ADDRESS, port)
    for origin, records in z.example_zones(keys).items():
        bind.add_zone(origin, records, extra_lines=z.EXAMPLE_EXTRA.get(origin, ()))
    for origin, lines in {**z.third_party(keys), **z.reverse_zones(), **z.smtp_zones()}.items():
        bind.add_zone(origin, extra_lines=lines)
    bind.add_zone("broken.test", extra_lines=z.broken(keys))
    bind.add_zone(z.SERVFAIL_ZONE[0], extra_lines=z.SERVFAIL_ZONE[1])
    for origin, lines in standards_zones.zones(list(bind.zones)).items():
        bind.add_zone(origin, extra_lines=lines)
    bind.start()
    _cleanup.callback(bind.stop)
    return DnsLab(bind, keys, port)


@pytest.fixture(scope="session")
def dns_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsLab]:
    """The check suite's BIND. Each test module imports this fixture, and pytest keeps
    one session fixture per importing module; the instances share one server (counted
    users), so a session runs one named, stopped when the last user finishes."""
    global _shared, _users
    require_root()
    require_binary("named")
    require_binary("openssl")
    if _shared is None:
        try:
            _shared = _start(tmp_path_factory.mktemp("checks-bind"))
        except BaseException:
            _cleanup.close()
            raise
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            _shared = None
            _cleanup.close()


POLICY_ADDRESS = "127.0.10.40"
POLICY_PORTS = range(5320, 5360)  # below tests.ports.LAB_PORTS, above the check-suite BIND's


@dataclass
class PolicyServer:
    """HTTPS serving MTA-STS policies by Host header; ``cafile`` trusts its certificate."""

    port: int
    cafile: str

    @property
    def options(self) -> HttpsOptions:
        return HttpsOptions(port=self.port, cafile=self.cafile, timeout=5)


@pytest.fixture(scope="session")
def policy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyServer]:
    """Python's HTTP server over TLS standing in for the web server that publishes the
    gateway's rendered policy file (any server does: the check speaks plain HTTPS)."""
    base = tmp_path_factory.mktemp("checks-https")
    cert, key = z.policy_certificate(base)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    responses = z.policy_responses()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            status, content_type, body = responses.get((self.headers.get("Host") or "").split(":")[0], (404, "text/plain", "no such policy\n"))
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class LoopbackServer(http.server.ThreadingHTTPServer):
        def server_bind(self) -> None:
            # HTTPServer.server_bind asks socket.getfqdn() for the bind address: a PTR
            # query to the system resolver, i.e. traffic off loopback. Name it ourselves.
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = POLICY_ADDRESS, self.server_address[1]

    server: http.server.ThreadingHTTPServer | None = None
    ports = list(POLICY_PORTS)  # several suites may run at once on one machine
    random.shuffle(ports)
    for port in ports:
        try:
            server = LoopbackServer((POLICY_ADDRESS, port), Handler)
            break
        except OSError:
            continue
    if server is None:
        raise OSError(f"no free port in {POLICY_PORTS.start}-{POLICY_PORTS.stop - 1} for the MTA-STS policy server")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield PolicyServer(server.server_address[1], str(cert))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def registered() -> None:
    registry.load_builtin()


def context(
    lab: DnsLab,
    *,
    stack: MailDomain | None = None,
    domain: str | None = None,
    gateway_key: str | None = None,
    private_key: bytes | None = None,
    smtp_port: int = 25,
    timeout: float = 2.0,
    https: HttpsOptions | None = None,
) -> CheckContext:
    """A context on the lab's BIND: a declaration, or an undeclared domain."""
    registered()
    if stack is None:
        assert domain
        return CheckContext(domain, lab.run_resolver(timeout), smtp=SmtpOptions(port=smtp_port, timeout=10), https=https or HttpsOptions())
    return CheckContext(
        stack.domain,
        lab.run_resolver(timeout),
        plan=planning.build(stack, gateway_key),
        dkim_private_key=private_key,
        smtp=SmtpOptions(port=smtp_port, timeout=10),
        https=https or HttpsOptions(),
    )


def run(ctx: CheckContext, *groups: str) -> list[Finding]:
    registered()
    return runner.run(ctx, registry.select(groups), deadline=60)


def statuses(findings: list[Finding], id: str) -> set[Status]:
    """The statuses the findings of one check id carry (asserting there are some)."""
    found = {f.status for f in findings if f.id == id}
    assert found, f"no finding for {id}: {[f.id for f in findings]}"
    return found


def of(findings: list[Finding], id: str) -> list[Finding]:
    return [f for f in findings if f.id == id]


def stack_from(raw: dict[str, object]) -> MailDomain:
    return from_config(raw)


def workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
