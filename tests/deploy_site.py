"""The place a deploy test runs: booted gateway hosts on a lab network, all on loopback.

::

    lab namespace ms16-lab-*                      host namespaces ms16-h<n>-*
    127.0.116.1   the deployer (Pulumi's SSH)  ─┐
    127.0.116.2   BIND: the stack's zones,       ├─ veth ─ 127.0.116.10  mx1: Debian 12, systemd, sshd
                  receiver.test, the PTRs        ├─ veth ─ 127.0.116.11  mx2
    127.0.116.20  Odoo (stand-in, :8069; it     ─┘          + apt proxy on 127.0.0.1:3142 (to the mirror)
                  submits mail from here)
    127.0.116.30  mx.receiver.test: the independent receiver
    127.0.116.40  an outside sender

The example stack is mapped onto it as ``mailstack lab`` maps stacks: each gateway's
``ipv4`` becomes its host's address (so SPF and the MX records name it), ``ipv6`` is
dropped (IPv6 on these links is not proven here), ``odoo.url`` and
``gateway.odooAddresses`` point at the stand-in, ``gateways[].ssh.hostKey`` pins the
key the host made at boot. Nothing else of the stack changes.
"""

from __future__ import annotations

import copy
import email.utils
import posixpath
import secrets
import shlex
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import dns.resolver
import yaml

from mailstack import plan
from mailstack.config.stack import from_config
from mailstack.core.record import Record
from mailstack.lab import netns as lab_netns
from mailstack.lab import smtp_tools
from mailstack.lab.bind import BindServer
from mailstack.lab.odoo import OdooStandIn
from mailstack.lab.postfix import LabError, make_workdir, wait_for
from mailstack.lab.tls import self_signed
from tests import debian_host, lab_network, project
from tests.command_replay import COMMAND_TIMEOUT, Deployer, Resource, capture, run_async, run_command
from tests.pulumi_harness import Mocks, ProgramRun, config_string, run_program
from tests.receiver import Receiver, Verdict, verdict

LAB_RANGE = "127.0.116.0/24"
DEPLOYER, DNS, ODOO, RECEIVER, OUTSIDE = "127.0.116.1", "127.0.116.2", "127.0.116.20", "127.0.116.30", "127.0.116.40"
HOST_ADDRESSES = ("127.0.116.10", "127.0.116.11")
RECEIVER_DOMAIN, RECEIVER_HOST = "receiver.test", "mx.receiver.test"
ODOO_PASSWORD = "odoo-mailgate-" + secrets.token_hex(8)
SECRET_KEYS = ("mailstack:sshPrivateKey", "mailstack:odooPassword")


def example_values(name: str = "onpremise") -> dict[str, Any]:
    """The example stack's ``mailstack:`` values, as a mapping."""
    document = yaml.safe_load(project.stack_path(name).read_text())["config"]
    return {key.removeprefix("mailstack:"): value for key, value in document.items() if key.startswith("mailstack:")}


@dataclass
class Deploy:
    """One capture of the program: the remote resources, the secrets, the plan's records."""

    run: ProgramRun
    resources: dict[str, Resource]
    secrets: set[str]
    values: dict[str, Any]

    @property
    def public_key(self) -> str:
        selector = from_config(self.values).dkim.selector
        return self.run.public_keys[f"dkim-{selector}"]  # one key per selector (mailstack.rules.dkim rotation)

    def records(self) -> list[Record]:
        return list(plan.build(from_config(self.values), self.public_key).records)

    def of_host(self, hostname: str) -> dict[str, Resource]:
        return {name: r for name, r in self.resources.items() if name.startswith(f"gateway-{hostname}-")}

    def copied(self, hostname: str, remote_path: str) -> str:
        """The text the program copies to ``remote_path`` on a host."""
        return next(str(r.inputs["source"]["text"]) for r in self.of_host(hostname).values()
                    if r.inputs.get("remotePath") == remote_path)


@dataclass
class Site:
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: dict[str, debian_host.DebianHost] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: make_workdir("ms16-"))
    bind: BindServer | None = None
    receiver: Receiver | None = None
    odoo: OdooStandIn | None = None
    client_key: str = ""
    deployer: Deployer | None = None
    down_seconds: float = 0.0

    @property
    def lab(self) -> str:
        return f"ms16-lab-{self.suffix}"

    def up(self, hostnames: tuple[str, ...], aliases: tuple[str, ...]) -> None:
        """Lab namespace, hosts booted and cabled, lab servers started (DNS zones later)."""
        debian_host.remove_stale_runs()
        lab_netns.create(self.lab, nameserver=DNS)
        for address in (DEPLOYER, DNS, ODOO, RECEIVER, OUTSIDE):
            lab_network.ip("-n", self.lab, "addr", "add", f"{address}/32", "dev", "lo")
        self.client_key, public = debian_host.ssh_keypair()
        for index, (hostname, address) in enumerate(zip(hostnames, HOST_ADDRESSES), start=1):
            netns = f"ms16-h{index}-{self.suffix}"
            lab_network.create(netns, (address,))
            lab_network.cable(netns, address, self.lab, f"gw{index}", LAB_RANGE, DEPLOYER)
            host = debian_host.DebianHost(hostname, address, netns, DNS, public, owned_netns=(self.lab,))
            self.hosts[hostname] = host
            host.boot()
        self.bind = BindServer(self.workdir / "bind", DNS, 53, netns=self.lab)
        self.receiver = Receiver(self.workdir / "receiver", self.lab, RECEIVER, RECEIVER_HOST, RECEIVER_DOMAIN, DNS)
        # Odoo 17: catchall@ and bounce@ are each alias domain's own addresses, not aliases.
        domains = sorted({address.rpartition("@")[2] for address in aliases})
        routed = [a for a in aliases if a.partition("@")[0] not in ("catchall", "bounce")]
        self.odoo = OdooStandIn(self.workdir / "odoo", ODOO, 8069, database="production", password=ODOO_PASSWORD,
                                alias_domains=domains, aliases=routed, netns=self.lab, login_name="mailgate")
        self.deployer = Deployer(lambda host, port: lab_network.tcp_connect(self.lab, host, port, source=DEPLOYER, timeout=10))

    def start_servers(self, records: list[Record], zones: tuple[str, ...]) -> None:
        assert self.bind and self.receiver and self.odoo
        self.publish(records, zones)
        self.bind.start()
        self.receiver.start()
        self.odoo.start()

    def publish(self, records: list[Record], zones: tuple[str, ...]) -> None:
        """Serve the plan's records for ``zones``, the receiver's zone and the PTRs."""
        assert self.bind
        for zone in zones:
            inside = [r for r in records if r.name == zone or r.name.endswith("." + zone)]
            self.bind.add_zone(zone, inside)
        self.bind.add_zone(RECEIVER_DOMAIN, extra_lines=[f"@ 300 IN MX 10 {RECEIVER_HOST}.", f"{RECEIVER_HOST}. 300 IN A {RECEIVER}"])
        ptrs = {RECEIVER: RECEIVER_HOST, DNS: f"ns1.{RECEIVER_DOMAIN}",
                **{host.address: host.hostname for host in self.hosts.values()}}
        self.bind.add_zone("116.0.127.in-addr.arpa", extra_lines=[f"{a.rsplit('.', 1)[1]} 300 IN PTR {n}." for a, n in ptrs.items()])
        if self.bind.process:
            self.bind.reload()

    def values(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """The stack mapped onto this site (see the module docstring)."""
        values = copy.deepcopy(dict(base))
        for gateway in values["gateways"]:
            host = self.hosts[gateway["hostname"]]
            gateway["ipv4"] = host.address
            gateway.pop("ipv6", None)
            gateway["ssh"] = {"hostKey": host.host_key}
        values["odoo"]["url"] = f"http://{ODOO}:8069"
        values["gateway"]["odooAddresses"] = [f"{ODOO}/32"]
        return values

    def capture(self, values: Mapping[str, Any]) -> Deploy:
        """Run the Pulumi program for these values under mocks; what it registered."""
        config = {f"mailstack:{key}": config_string(value) for key, value in values.items()}
        config.update({"mailstack:sshPrivateKey": self.client_key, "mailstack:odooPassword": ODOO_PASSWORD})
        run = run_program(config=config, secret_keys=list(SECRET_KEYS), mocks=Mocks(real_private_keys=True))
        resources, found = capture(run)
        return Deploy(run, resources, found | {self.client_key, ODOO_PASSWORD}, dict(values))

    def ssh(self, hostname: str, command: str, stdin: str | None = None) -> tuple[int, str, str]:
        """Run a command on a host as root (to look at it or prepare it, never to deploy)."""
        host = self.hosts[hostname]

        async def run() -> tuple[int, str, str]:
            sock = lab_network.tcp_connect(self.lab, host.address, 22, source=DEPLOYER)
            async with asyncssh.connect(host.address, sock=sock, username="root", agent_path=None, login_timeout=30,
                                        client_keys=[asyncssh.import_private_key(self.client_key)],
                                        known_hosts=([asyncssh.import_public_key(host.host_key)], [], [])) as conn:
                try:
                    result = await run_command(conn, command, stdin)
                except asyncssh.TimeoutError as err:
                    raise AssertionError(f"{hostname}: {command}: still running after {COMMAND_TIMEOUT:.0f} s\n"
                                         f"{err.stdout or ''}{err.stderr or ''}") from None
                return int(result.exit_status or 0), str(result.stdout), str(result.stderr)

        return run_async(run())

    def checked(self, hostname: str, command: str, stdin: str | None = None) -> str:
        status, out, err = self.ssh(hostname, command, stdin)
        assert status == 0, f"{hostname}: {command}: exit {status}: {err}{out}"
        return out

    def install_certificate(self, hostname: str, cert_path: str, key_path: str, also: tuple[str, ...] = ()) -> None:
        """What the administrator (or certbot) does before the deploy: the host's
        certificate where ``gateway.tls`` says (self-signed here, its own CA), naming
        ``also`` too (the MTA-STS policy hosts the gateway serves)."""
        cert, key = self_signed([hostname, *also], ca=True)
        self.checked(hostname, f"install -d -m 0755 {shlex.quote(posixpath.dirname(cert_path))} && "
                               f"cat > {shlex.quote(cert_path)}", cert.decode())
        self.checked(hostname, f"install -d -m 0755 {shlex.quote(posixpath.dirname(key_path))} && umask 077 && "
                               f"cat > {shlex.quote(key_path)}", key.decode())

    def resolve(self, name: str) -> str:
        """An A record as the lab's name server answers it."""
        def query() -> str:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [DNS]
            return str(resolver.resolve(name, "A")[0])

        return lab_network.in_netns(self.lab, query)

    def submit_as_odoo(self, deploy: Deploy, hostname: str, subject: str) -> Verdict:
        """Mail as Odoo sends it with the odoo.conf the program copied to ``hostname``:
        smtp_server/smtp_port from it, From its email_from, Return-Path bounce@; then
        the receiver's verdict on the delivered copy."""
        assert self.receiver
        options = dict(line.split(" = ", 1) for line in deploy.copied(hostname, "/etc/mailstack/odoo/odoo.conf").splitlines()
                       if " = " in line and not line.startswith(("#", ";")))
        domain = deploy.values["domain"]
        message_id = email.utils.make_msgid(domain=domain)
        raw = (f"From: Odoo <{options['email_from']}>\r\nTo: someone@{RECEIVER_DOMAIN}\r\nSubject: {subject}\r\n"
               f"Message-ID: {message_id}\r\nDate: {email.utils.formatdate()}\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n\r\nSent by Odoo through the deployed gateway.\r\n").encode()
        result = smtp_tools.send(self.resolve(options["smtp_server"]), int(options["smtp_port"]), f"bounce@{domain}",
                                 [f"someone@{RECEIVER_DOMAIN}"], raw, netns=self.lab, helo=f"odoo.{domain}", source=ODOO)
        assert result.get("data", [0])[0] == 250, result
        delivered = wait_for(lambda: next((m for m in self.receiver.messages() if message_id.encode() in m), None), 60,
                             what=f"{message_id} at the receiver")
        return verdict(delivered, RECEIVER_HOST)

    def send_inbound(self, hostname: str, recipient: str, subject: str) -> dict[str, Any]:
        """Mail from the outside to ``recipient`` through ``hostname``; what Odoo stored."""
        assert self.odoo
        message_id = email.utils.make_msgid(domain=RECEIVER_DOMAIN)
        raw = (f"From: Alice <alice@{RECEIVER_DOMAIN}>\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
               f"Message-ID: {message_id}\r\nDate: {email.utils.formatdate()}\r\n\r\nHello Odoo.\r\n").encode()
        result = smtp_tools.send(self.hosts[hostname].address, 25, f"alice@{RECEIVER_DOMAIN}", [recipient], raw,
                                 netns=self.lab, helo=f"sender.{RECEIVER_DOMAIN}", source=OUTSIDE)
        if result.get("data", [0])[0] != 250:
            raise LabError(f"{hostname} refused mail to {recipient}: {result}")
        stored = wait_for(lambda: next((m for m in self.odoo.messages() if m["message_id"] == message_id), None), 60,
                          what=f"{message_id} in Odoo")
        return dict(stored)

    def down(self) -> None:
        """Stop everything by PID (the slow halts at the same time), remove every trace."""
        started = time.monotonic()
        for host in self.hosts.values():
            host.halt()
        if self.receiver:
            self.receiver.terminate()
        for stop in (self.odoo.stop if self.odoo else None, self.bind.stop if self.bind else None):
            if stop:
                stop()
        for host in self.hosts.values():
            host.stop()
        if self.receiver:
            self.receiver.wait()
        for host in self.hosts.values():
            lab_network.delete(host.netns)
        lab_network.delete(self.lab)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.down_seconds = time.monotonic() - started
