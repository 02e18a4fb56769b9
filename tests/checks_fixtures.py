"""Fixtures of the check-suite tests: one real BIND for the session, serving
``tests.check_zones``, and a UDP socket that swallows queries (the timeout case).

Import the fixtures into a test module with ``from tests.checks_fixtures import dns_lab``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from checks import registry, runner
from checks.context import CheckContext, SmtpOptions
from checks.finding import Finding, Status
from checks.resolver import Resolver, Server
from modules.config import from_config
from modules.lab.bind import BindServer
from modules.model import MailDomain
from modules.plan import plan
from tests import check_zones as z
from tests.servers import require_binary, require_root


@dataclass
class DnsLab:
    bind: BindServer
    keys: z.Keys
    port: int

    def resolver(self, timeout: float = 2.0) -> Resolver:
        return Resolver((Server(z.BIND_ADDRESS, self.port),), timeout)

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


def _start(base: Path) -> tuple[DnsLab, socket.socket]:
    keys = z.make_keys()
    port, swallow = _free_port()  # never read: every query delegated there times out
    bind = BindServer(base, z.BIND_ADDRESS, port)
    for origin, records in z.example_zones(keys).items():
        bind.add_zone(origin, records)
    for origin, lines in {**z.third_party(keys), **z.reverse_zones(), **z.smtp_zones()}.items():
        bind.add_zone(origin, extra_lines=lines)
    bind.add_zone("broken.test", extra_lines=z.broken(keys))
    bind.add_zone(z.SERVFAIL_ZONE[0], extra_lines=z.SERVFAIL_ZONE[1])
    try:
        bind.start()
    except BaseException:
        swallow.close()
        raise
    return DnsLab(bind, keys, port), swallow


@pytest.fixture(scope="session")
def dns_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsLab]:
    """The check suite's BIND. Each test module imports this fixture, and pytest keeps
    one session fixture per importing module; the instances share one server (counted
    users), so a session runs one named, stopped when the last user finishes."""
    global _shared, _users
    require_root()
    require_binary("named")
    require_binary("openssl")
    swallow: socket.socket | None = None
    if _shared is None:
        _shared, swallow = _start(tmp_path_factory.mktemp("checks-bind"))
        _sockets.append(swallow)
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0 and _shared is not None:
            _shared.bind.stop()
            _shared = None
            while _sockets:
                _sockets.pop().close()


_sockets: list[socket.socket] = []


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
) -> CheckContext:
    """A context on the lab's BIND: a declaration, or an undeclared domain."""
    registered()
    if stack is None:
        assert domain
        return CheckContext(domain, lab.resolver(timeout), smtp=SmtpOptions(port=smtp_port, timeout=10))
    return CheckContext(
        stack.domain,
        lab.resolver(timeout),
        stack=stack,
        planned=tuple(plan(stack, gateway_key)),
        gateway_key=gateway_key,
        dkim_private_key=private_key,
        smtp=SmtpOptions(port=smtp_port, timeout=10),
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
