"""Start each role of the lab inside its network namespace, detached and recorded.

Called from inside the namespace (``mailstack.lab.control`` re-executes itself there),
so every child inherits the namespace and its resolver (``/etc/netns/<ns>/resolv.conf``
bind-mounted over ``/etc/resolv.conf`` by ``ip netns exec``). Each start records the
PID in the state directory at once, so ``lab down`` finds it even after a crash.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from mailstack.core.record import Record
from mailstack.gateway import render
from mailstack.lab.binaries import binary
from mailstack.lab.aliasd import AliasDaemon
from mailstack.lab.bind import BindServer
from mailstack.lab.odoo import OdooStandIn
from mailstack.lab.postfix import (
    OpenDkim,
    PostfixInstance,
    install_mailgate,
    lab_layout,
    wait_for,
)
from mailstack.lab.seed import Seed
from mailstack.lab.state import LabState, write_secret
from mailstack.lab.tls import self_signed
from mailstack.lab.topology import TSIG_KEY_NAME, Topology
from mailstack.plan import Plan

MAILGATE_USER = "nobody"
ODOO_LOGIN = "admin"


def start_bind(state: LabState, plan: Plan, topology: Topology, seeds: tuple[Seed, ...] = ()) -> BindServer:
    """The lab's DNS: the stack's zones dynamic (the provider fills them), empty or as
    seeded (``--seed-zone``), the recipient's zone and the reverse zones static."""
    bind = BindServer(state.role_dir("bind"), topology.bind_address, topology.bind_port, stderr_path=state.root / "bind" / "named.stderr")
    stack = plan.stack
    key_name = stack.dns.tsig_key_name or TSIG_KEY_NAME
    bind.add_tsig_key(key_name, stack.dns.tsig_algorithm, state.tsig_secret())
    seeded = {seed.origin: seed for seed in seeds}
    for zone in plan.managed_zones:
        if zone in seeded:
            bind.add_zone_file(zone, seeded[zone].zone_text(), dynamic=True, update_key=key_name)
        else:
            bind.add_zone(zone, dynamic=True, update_key=key_name)
    ttl = 300
    recipient = topology.recipient_domain
    bind.add_zone(
        recipient,
        [
            Record(recipient, "MX", topology.recipient_host, ttl, 10),
            Record(topology.recipient_host, "A", topology.recipient_address, ttl),
            Record(recipient, "TXT", f"v=spf1 ip4:{topology.recipient_address} -all", ttl),
            Record(f"_dmarc.{recipient}", "TXT", "v=DMARC1; p=none", ttl),
        ],
    )
    pointers = {
        topology.gateway_address: topology.gateway_hostname,
        topology.recipient_address: topology.recipient_host,
        topology.bind_address: f"ns1.{stack.dns.zone}",
        topology.odoo_address: f"odoo.{stack.domain}",
    }
    for zone in topology.reverse_zones:
        records = [
            Record(f"{address.split('.')[3]}.{zone}", "PTR", host, ttl)
            for address, host in sorted(pointers.items())
            if reverse_zone(address) == zone
        ]
        bind.add_zone(zone, records)
    bind.start()
    assert bind.pid is not None
    state.record("bind", bind.pid, str(bind.conf_path))
    return bind


def reverse_zone(address: str) -> str:
    """The /24 reverse zone of an IPv4 address (``c.b.a.in-addr.arpa`` for a.b.c.d)."""
    a, b, c, _ = address.split(".")
    return f"{c}.{b}.{a}.in-addr.arpa"


def restart_bind(state: LabState) -> int:
    """Start named again on its existing configuration and zone files: the dynamic
    zones come back from BIND's journal, as after a real restart."""
    workdir = state.role_dir("bind")
    conf = workdir / "named.conf"
    log = workdir / "named.log"
    before = log.read_text(errors="replace").count("running") if log.exists() else 0
    with open(workdir / "named.stderr", "ab") as stderr:
        process = subprocess.Popen([binary("named"), "-f", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    state.record("bind", process.pid, str(conf))

    def running() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"named exited with {process.returncode}: see {log}")
        return log.exists() and log.read_text(errors="replace").count("running") > before

    wait_for(running, 30, what="named to load its zones")
    return process.pid


def odoo_standin(state: LabState, plan: Plan, topology: Topology, netns: str | None = None) -> OdooStandIn:
    """The Odoo stand-in as the administrator would have set it up: one alias domain
    per relay domain (with the stack's bounce, catchall and notifications names), the
    stack's aliases on each, and outgoing mail through the gateway (the rendered
    odoo.conf), sent from Odoo's lab address."""
    stack = plan.stack
    workdir = state.role_dir("odoo")
    odoo_conf = workdir / "odoo.conf"
    odoo_conf.write_text(render_gateway(state, plan, topology)[1]["odoo/odoo.conf"].text, encoding="utf-8")
    names = f"bounce={stack.odoo.bounce},catchall={stack.odoo.catchall},default_from={stack.odoo.notifications}"
    return OdooStandIn(
        workdir,
        topology.odoo_address,
        topology.odoo_port,
        database=stack.odoo.database or "odoo",
        password=state.odoo_password(),
        alias_domains=[f"{domain},{names}" for domain in plan.relay_domains],
        aliases=[f"{local}@{domain}" for domain in plan.relay_domains for local in stack.inbound.aliases],
        login_name=ODOO_LOGIN,
        netns=netns,
        odoo_conf=odoo_conf,
        smtp_source=topology.odoo_address,
        hostname=f"odoo.{stack.domain}",
    )


def start_odoo(state: LabState, plan: Plan, topology: Topology) -> OdooStandIn:
    """Start the Odoo stand-in and record it."""
    odoo = odoo_standin(state, plan, topology)
    odoo.start()
    assert odoo.pid is not None
    state.record("odoo", odoo.pid, str(odoo.db_path))
    return odoo


def start_recipient(state: LabState, topology: Topology) -> int:
    """The recipient MTA (``mailstack.lab.recipient``) on port 25 of its address."""
    workdir = state.role_dir("recipient")
    ready = workdir / "ready"
    ready.unlink(missing_ok=True)
    spool = workdir / "spool"
    command = [
        sys.executable, "-m", "mailstack.lab.recipient", "--address", topology.recipient_address, "--port", "25",
        "--spool", str(spool), "--domain", topology.recipient_domain, "--ready-file", str(ready),
    ]
    with open(workdir / "recipient.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    state.record("recipient", process.pid, str(spool))

    def started() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the recipient MTA exited with {process.returncode}: see {workdir / 'recipient.log'}")
        return ready.exists()

    wait_for(started, 30, what="the recipient MTA")
    return process.pid


def lab_certificate(workdir: Path, hostname: str) -> tuple[Path, Path]:
    """A self-signed certificate for the gateway's STARTTLS (made once)."""
    cert_path, key_path = workdir / "tls" / "gateway.pem", workdir / "tls" / "gateway.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    cert_pem, key_pem = self_signed([hostname])
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert_pem)
    write_secret(key_path, key_pem.decode())
    return cert_path, key_path


def render_gateway(state: LabState, plan: Plan, topology: Topology) -> tuple[Path, dict[str, render.RenderedFile]]:
    """The gateway's files, rendered by ``mailstack.gateway.render`` with a layout in the state dir."""
    workdir = state.role_dir("gateway")
    workdir.chmod(0o755)
    cert, key = lab_certificate(workdir, topology.gateway_hostname)
    stack = plan.stack
    assert stack.gateway is not None
    settings = dataclasses.replace(
        stack.gateway,
        tls=dataclasses.replace(stack.gateway.tls, cert=str(cert), key=str(key)),
        mailgate=dataclasses.replace(
            stack.gateway.mailgate, password_file=str(workdir / "mailstack" / "odoo-password")
        ),
    )
    layout = lab_layout(workdir, topology.gateway_address, mailgate_user=MAILGATE_USER)
    pem = state.dkim_private_key(stack.dkim.selector, stack.dkim.bits)
    files = render.render(plan, settings, pem, layout=layout)
    return workdir, files


def start_gateway(state: LabState, plan: Plan, topology: Topology) -> None:
    """OpenDKIM, the mailgate and a private Postfix, all from the rendered files."""
    workdir, files = render_gateway(state, plan, topology)
    install_mailgate(files, workdir, state.odoo_password(), user=MAILGATE_USER)
    opendkim = OpenDkim(workdir, files)
    opendkim.start()
    assert opendkim.pid is not None
    state.record("opendkim", opendkim.pid, str(opendkim.conf_path))
    postfix = PostfixInstance(
        workdir,
        files,
        overrides={
            # Only the gateway's address is "this host": the recipient's MX, also on
            # lo in the namespace, must not look like a mail loop.
            "inet_interfaces": topology.gateway_address,
            # Send from the gateway's address, the one SPF authorises (Postfix does
            # not pick it by itself for a loopback inet_interfaces).
            "smtp_bind_address": topology.gateway_address,
        },
    )
    postfix.start()
    assert postfix.master_pid is not None
    state.record("postfix", postfix.master_pid, "master")
    if render.uses_aliasd(files):
        aliasd = AliasDaemon(workdir, files, user=MAILGATE_USER)
        aliasd.start()
        assert aliasd.pid is not None
        state.record("aliasd", aliasd.pid, str(aliasd.conf_path))
