"""The lab's roles: each starts its servers inside the namespace and records their PIDs.

A role has a name, the names of the processes it records (``lab down`` stops those,
``lab up`` restarts a role one of them died in), and ``start(lab, fresh)``. ``for_lab``
lists the roles a stack needs — DNS, the records, Odoo, the independent receiver, one
gateway per declared gateway host, the simulated third parties, the MTA-STS policy
hosts — and ``start_all`` starts DNS first (everything resolves through it), then all
the others at once, in threads: they are independent until mail flows, and their
start-up is mostly waiting on child processes. A new kind of server (Dovecot for IMAP,
postsrsd, a gateway in a container) is one more role here.

Called from inside the namespace (``mailstack.lab.control`` re-executes itself
there), so every child inherits the namespace and its resolver (``/etc/netns/<ns>/
resolv.conf`` bind-mounted over ``/etc/resolv.conf`` by ``ip netns exec``).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mailstack.core import zonefile
from mailstack.core.model import Gateway, ImapMailbox, InboundMode, MailDomain, OdooSetting, SenderKind
from mailstack.gateway import render
from mailstack.lab import files, gateway, nginx, provision, rotation, thirdparty, translate, users, zones
from mailstack.lab.binaries import binary
from mailstack.lab.bind import BindServer
from mailstack.lab.dovecot import Dovecot
from mailstack.lab.odoo import OdooStandIn
from mailstack.lab.postfix import LabError
from mailstack.lab.process import spawn, until
from mailstack.lab.receiver import Receiver
from mailstack.lab.receiver import config as receiver_config
from mailstack.lab.seed import Seed
from mailstack.lab.state import LabState, private_dir
from mailstack.lab.topology import NAMESERVER, SENDER_HOSTS, TSIG_KEY_NAME, Host, Topology
from mailstack.lab.translate import odoo_url
from mailstack.odoo.apply import Connection, apply
from mailstack.odoo.client import OdooClient
from mailstack.odoo.desired import desired, slug
from mailstack.plan import Plan
from mailstack.plan.changes import ChangeSet
from mailstack.rules import mta_sts

ODOO_LOGIN = "admin"
#: The local part inbound probes use where the stack declares no alias and the
#: receiving side takes any address Odoo has (Odoo's servers, a mailbox provider).
PROBE_ALIAS = translate.PROBE_ALIAS
#: libmilter's listener looks at its stop flag every ~5 s (measured 4.5 s after
#: SIGTERM); the lab's milters keep no state, so they get this long, then SIGKILL.
MILTER_GRACE = 0.5
#: Seconds in one of the stand-in's minutes (its crons, fetchmail's among them): an
#: imap-mode stack's 2-minute fetch interval takes 4 s in the lab, and ``lab check``
#: is told (``MAILSTACK_E2E_MINUTE``) so it judges the interval on that clock.
ODOO_MINUTE = 2.0


#: The lab's journal of the records mailstack owns (``mailstack.lab.provision``).
JOURNAL = "records.json"


@dataclass
class Lab:
    """What the roles of one lab share: its state, the stack, its plan and topology."""

    state: LabState
    declared: MailDomain
    plan: Plan  # of the translated stack (mailstack.lab.translate)
    topology: Topology
    #: The user's zones to load before the plan is applied (``--seed-zone``).
    seeds: tuple[Seed, ...] = ()
    changes: ChangeSet | None = None

    @property
    def stack(self) -> MailDomain:
        return self.plan.stack


def odoo_aliases(plan: Plan) -> list[str]:
    """Every alias the Odoo stand-in has: the declared aliases on each name Odoo
    receives on (the lab's probe alias among them where the lab declared it,
    ``translate.lab_stack``). Odoo's catchall and bounce are alias-domain settings."""
    stack = plan.stack
    return sorted({f"{local}@{domain}" for domain in odoo_domains(plan) for local in stack.inbound.aliases})


def odoo_domains(plan: Plan) -> list[str]:
    """The names Odoo receives on: the relay domains behind gateways, else each
    domain's inbound name."""
    stack = plan.stack
    if stack.inbound.mode is InboundMode.GATEWAY:
        return list(plan.relay_domains)
    return sorted({stack.inbound_domain(d) for d in stack.domains})


def mailbox_local_parts(stack: MailDomain) -> tuple[str, ...]:
    """The mailboxes a mailbox provider hosts for the stack's domains in the lab."""
    odoo = stack.odoo
    return tuple(dict.fromkeys([*stack.inbound.aliases, odoo.catchall, odoo.bounce, odoo.notifications, "postmaster", "abuse", PROBE_ALIAS]))


def third_party_keys(state: LabState, stack: MailDomain) -> dict[SenderKind, str]:
    """The simulated services' signing keys (PEM) of the stack's third-party senders."""
    kinds = {s.kind for s in stack.outbound} & set(thirdparty.SIGNING_KINDS)
    return {kind: state.private_key(thirdparty.key_name(kind)) for kind in sorted(kinds)}


class Role:
    """One part of the lab. Subclasses set ``name``/``processes`` and ``start``."""

    name = ""
    processes: tuple[str, ...] = ()

    def start(self, lab: Lab, fresh: bool) -> None:
        raise RuntimeError(f"{type(self).__name__} does not start anything")


class Dns(Role):
    """BIND: the stack's zones empty and dynamic, everything else static."""

    name = "bind"
    processes = ("bind",)

    def start(self, lab: Lab, fresh: bool) -> None:
        state, topology = lab.state, lab.topology
        workdir = state.role_dir("bind")
        if fresh:
            shutil.rmtree(workdir)
        private_dir(workdir)
        keys = {kind: LabState.public_key_b64(pem) for kind, pem in third_party_keys(state, lab.declared).items()}
        records = thirdparty.records(lab.plan, topology, keys)
        zone_set = zones.build(lab.plan, topology, records)
        bind = BindServer(workdir, topology.bind_address, topology.dns_port, stderr_path=files.log_file(workdir, "named.stderr"),
                          nameserver=NAMESERVER)
        stack = lab.stack
        key_name = stack.dns.tsig_key_name or TSIG_KEY_NAME
        bind.add_tsig_key(key_name, stack.dns.tsig_algorithm, state.tsig_secret())
        seeded = {seed.origin: seed for seed in lab.seeds}
        for zone, initial in zone_set.dynamic.items():
            if zone in seeded:
                # The user's zone as it is (its addresses mapped like the stack's), the
                # lab's own hosts in place of the seed's records at their names.
                text = translate.seed_zone(seeded[zone].zone_text(), topology, {(r.name, r.type) for r in initial})
                bind.add_zone_file(zone, text + "\n".join(zonefile.lines(initial)) + "\n", dynamic=True, update_key=key_name, signed=state.dnssec)
            else:
                bind.add_zone(zone, initial, dynamic=True, update_key=key_name, signed=state.dnssec)
        for zone, content in {**zone_set.static, **zone_set.reverse}.items():
            bind.add_zone(zone, content, signed=state.dnssec)
        if state.dnssec:  # every zone is its own anchor: the lab has no root to chain from
            anchors = [line for zone in bind.zones for line in bind.ds_lines(zone)]
            files.write(state.trust_anchor_file, "\n".join(anchors) + "\n")
        bind.start()
        assert bind.pid is not None
        state.record("bind", bind.pid, str(bind.conf_path))


class Records(Role):
    """The plan's records, published through the RFC 2136 provider's operations."""

    name = "records"

    def start(self, lab: Lab, fresh: bool) -> None:
        decide_rotation(lab)  # before the records are published, as the Pulumi program does
        lab.changes = publish(lab.state, lab.plan, lab.topology)


def decide_rotation(lab: Lab) -> None:
    """The DKIM rotation's phase for this ``lab up`` (``mailstack.lab.rotation``): from
    what the lab's BIND serves before this run publishes and the recorded state; the
    gateways then render the phase's signing selector (``Plan.signing_selector``)."""
    recorded = rotation.read(rotation.path_of(lab.state))
    lab.plan = rotation.decide(lab.plan, recorded)


def publish(state: LabState, plan: Plan, topology: Topology) -> ChangeSet:
    """Publish the plan's records as ``pulumi up`` would: all or nothing, idempotent
    (ConflictError: nothing written)."""
    key_name = plan.stack.dns.tsig_key_name or TSIG_KEY_NAME
    wanted = provision.desired(plan, topology.bind_address, topology.dns_port, key_name, state.tsig_secret())
    return provision.apply(wanted, state.stack_root / JOURNAL)


def odoo_user(stack: MailDomain) -> tuple[str, int]:
    """The Odoo user the stand-in knows: the mailgate's (``gateway.mailgate.login`` or
    ``uid``) when the stack has gateways, else ``admin`` with uid 2."""
    mailgate = stack.gateway.mailgate if stack.gateway else None
    login = mailgate.login if mailgate and mailgate.login else ODOO_LOGIN
    uid = mailgate.uid if mailgate and mailgate.uid else 2
    return login, uid


def odoo_standin(state: LabState, plan: Plan, topology: Topology, netns: str | None = None) -> OdooStandIn:
    """The Odoo stand-in (``mailstack.lab.odoo``) as the administrator would have set it
    up: an alias domain per name Odoo receives on (with the stack's bounce, catchall and
    notifications names), the aliases on each, the mailgate's user, and outgoing mail
    through the first gateway (its rendered odoo.conf), sent from Odoo's lab address."""
    stack = plan.stack
    address = topology.odoo.ipv4
    assert address is not None
    login, uid = odoo_user(stack)
    workdir = private_dir(state.role_dir("odoo"))
    odoo_conf = None
    if stack.gateways and stack.gateway is not None:
        odoo_conf = files.write(workdir / "odoo.conf", gateway.rendered(state, plan, stack.gateways[0])["odoo/odoo.conf"].text, 0o600)
    names = f"bounce={stack.odoo.bounce},catchall={stack.odoo.catchall},default_from={stack.odoo.notifications}"
    fresh = managed_alias_domains(stack)
    return OdooStandIn(
        workdir, address, 8069, database=stack.odoo.database or "odoo", password=state.odoo_password(),
        alias_domains=[] if fresh else [f"{domain},{names}" for domain in odoo_domains(plan)], aliases=[] if fresh else odoo_aliases(plan),
        login_name=login, uid=uid, netns=netns, odoo_conf=odoo_conf, smtp_source=address, hostname=topology.odoo.name,
        minute=ODOO_MINUTE,
    )


def managed_alias_domains(stack: MailDomain) -> bool:
    """Whether mailstack makes Odoo's alias domains (``odoo.manage: [aliasDomains]``):
    then the stand-in starts without them, as a fresh Odoo, and ``OdooSettings`` of
    the lab creates them the way ``pulumi up`` does."""
    return stack.odoo.manages(OdooSetting.ALIAS_DOMAINS)


class OdooSettings(Role):
    """Odoo's mail settings of the stack (``odoo.manage``), applied to the stand-in by
    ``mailstack.odoo.apply`` — the operations of ``pulumi up``'s ``OdooSettings`` —
    after every other role (the incoming server's confirmation logs in to the IMAP
    server). Around it, what the administrator does in Odoo itself, which mailstack
    does not manage: the declared companies exist before, the aliases are created on
    mailstack's alias domains after."""

    name = "odoo-settings"

    def start(self, lab: Lab, fresh: bool) -> None:
        stack, state = lab.stack, lab.state
        wanted = desired(lab.plan)
        login = odoo_user(stack)[0]
        connection = Connection(odoo_url(lab.topology), stack.odoo.database or "odoo", login, state.odoo_password(),
                                smtp_password=state.smtp_auth_password() if wanted.mail_server and wanted.mail_server.smtp_user else None,
                                imap_password=state.imap_password() if wanted.incoming_server else None, adopt=stack.odoo.adopt)
        client = OdooClient(connection.url, connection.database, login, connection.password)
        if managed_alias_domains(stack):
            known = {row["name"] for row in client.search_read("res.company", [], ["name"])}
            for company, _ in stack.odoo.companies:
                if company not in known:
                    client.call("res.company", "create", {"name": company})
        apply(wanted, connection)
        if managed_alias_domains(stack):
            _create_aliases(client, odoo_aliases(lab.plan))


def _create_aliases(client: OdooClient, addresses: Sequence[str]) -> None:
    """The aliases as the administrator creates them (Settings → Technical → Aliases),
    each on its alias domain, for leads; those that exist are kept."""
    model = client.call("ir.model", "search", [["model", "=", "crm.lead"]])
    for address in addresses:
        local, domain = address.rsplit("@", 1)
        [domain_id] = client.call("mail.alias.domain", "search", [["name", "=", domain]])
        if not client.call("mail.alias", "search", [["alias_name", "=", local], ["alias_domain_id", "=", domain_id]]):
            client.call("mail.alias", "create", {"alias_name": local, "alias_domain_id": domain_id, "alias_model_id": model[0]})


class Odoo(Role):
    name = "odoo"
    processes = ("odoo",)

    def start(self, lab: Lab, fresh: bool) -> None:
        odoo = odoo_standin(lab.state, lab.plan, lab.topology)
        odoo.start()
        assert odoo.pid is not None
        lab.state.record("odoo", odoo.pid, str(odoo.db_path))
        if lab.stack.forwards_through_gateways:
            login = odoo_user(lab.stack)[0]
            _match_by_local_part(OdooClient(odoo_url(lab.topology), lab.stack.odoo.database or "odoo", login, lab.state.odoo_password()))


def _match_by_local_part(client: OdooClient) -> None:
    """What docs/inbound.md asks of the administrator for mode forward: every alias
    with "Local-part based incoming detection" (``alias_incoming_local``), so a message
    whose alias was only in Bcc — it reaches Odoo as ``<local>@<db>.odoo.com`` alone,
    in Delivered-To — still routes to the alias of the custom domain (Odoo 17
    ``message_route``: alias_name in the recipients' local parts)."""
    ids = client.call("mail.alias", "search", [])
    if ids:
        client.call("mail.alias", "write", ids, {"alias_incoming_local": True})


def imap_mailbox(stack: MailDomain) -> ImapMailbox | None:
    """The mailbox Odoo fetches (``inbound.imap`` of an imap-mode stack)."""
    return stack.inbound.imap if stack.inbound.mode is InboundMode.IMAP else None


def shared_mailbox(stack: MailDomain) -> str | None:
    """Where, under the receiver's ``mail/``, the fetched mailbox lives."""
    imap = imap_mailbox(stack)
    return f"shared/{slug(imap.user)}/" if imap else None


class IndependentReceiver(Role):
    """The receiver; for an imap-mode stack also the provider's IMAP server: Dovecot on
    the one shared mailbox the receiver delivers the stack's addresses to, on the
    declared ``inbound.imap`` host and port with a lab-CA certificate, its user's
    password the lab's ``imapPassword``."""

    name = "receiver"

    def __init__(self, stack: MailDomain) -> None:
        imap = ("receiver-imap",) if imap_mailbox(stack) else ()
        self.processes = ("receiver-opendkim", "receiver-opendmarc", "receiver-postfix", *imap)

    def start(self, lab: Lab, fresh: bool) -> None:
        stack = lab.stack
        mailbox_domains = stack.domains if stack.inbound.mode in (InboundMode.IMAP, InboundMode.FORWARD) else ()
        config = receiver_config(lab.topology, mailbox_domains, mailbox_local_parts(stack), shared_mailbox(stack))
        receiver = Receiver.of_lab(lab.state, config)
        if fresh:
            shutil.rmtree(receiver.workdir / "spool", ignore_errors=True)
        receiver.start()
        imap, shared = imap_mailbox(stack), shared_mailbox(stack)
        if imap is None or shared is None:
            return
        host = lab.topology.host(imap.host)
        assert host.ipv4 is not None
        mailbox = receiver.maildir / shared.rstrip("/")
        for directory in (mailbox.parent, mailbox, mailbox / "cur", mailbox / "new", mailbox / "tmp"):
            private_dir(directory, owner=users.MAILBOX_USER)  # before the first delivery makes it
        ssl = imap.security == "ssl"
        dovecot = Dovecot(private_dir(lab.state.role_dir("imap")), host.ipv4, imap.host, {imap.user: lab.state.imap_password()},
                          imap_port=143 if ssl or imap.port == 993 else imap.port, imaps_port=imap.port if ssl else 993,
                          mailbox=mailbox, mail_owner=users.MAILBOX_USER,
                          certificate=lab.state.authority().issue([imap.host]))
        dovecot.start()
        assert dovecot.pid is not None
        lab.state.record("receiver-imap", dovecot.pid, str(dovecot.workdir / "dovecot.conf"))


class GatewayHost(Role):
    """One gateway host of the stack (``mailstack.lab.gateway``)."""

    def __init__(self, host: Gateway, aliasd: bool = False, mailgated: bool = False, srs: bool = False) -> None:
        self.host = host
        self.name = gateway.role_name(host)
        # mailstack-aliasd where the gateway asks Odoo which recipients exist, the
        # resident mailgate where Postfix delivers to Odoo over LMTP, postsrsd where it
        # forwards to <db>.odoo.com (inbound.mode forward).
        optional = [f"{self.name}-aliasd"] if aliasd else []
        optional += [f"{self.name}-mailgated"] if mailgated else []
        optional += [f"{self.name}-postsrsd"] if srs else []
        self.processes = (f"{self.name}-opendkim", f"{self.name}-postfix", *optional)

    def start(self, lab: Lab, fresh: bool) -> None:
        gateway.start(lab.state, lab.plan, self.host, fresh=fresh)


def _python_service(lab: Lab, role: str, module: str, config: Mapping[str, object]) -> None:
    workdir = private_dir(lab.state.role_dir(role))
    config_path = files.write(workdir / "config.json", json.dumps(config, indent=1), 0o600)
    ready = workdir / "ready"
    ready.unlink(missing_ok=True)
    log = files.log_file(workdir, f"{role}.log")
    process = spawn([sys.executable, "-m", module, "--config", str(config_path), "--ready-file", str(ready)], log)
    lab.state.record(role, process.pid, str(config_path))
    until(ready.exists, 30, f"the lab's {role}", process, log)


def saas_receives(stack: MailDomain) -> bool:
    """Whether ``<db>.odoo.com`` receives mail in the lab: the inbound subdomain's MX
    (mode odoo-mx), or the gateways' redirects (mode forward)."""
    return bool(stack.odoo.saas_host) and (stack.inbound.mode is InboundMode.ODOO_MX or stack.forwards_through_gateways)


def simulation(lab: Lab) -> thirdparty.Simulation:
    """What the simulated third parties run for this stack."""
    state, topology = lab.state, lab.topology
    key_files = {kind: str(state.key_path(thirdparty.key_name(kind))) for kind in third_party_keys(state, lab.declared)}
    relays = thirdparty.relays(lab.declared, topology, key_files)
    workdir = private_dir(state.role_dir("services"))
    saas = []
    if saas_receives(lab.stack):
        state.odoo_password()  # the file the service reads: made here, not left to the Odoo role running beside
        chain, key = state.authority().issue([topology.odoo.name])
        cert = files.write(workdir / "tls" / "chain.pem", chain)
        key_path = files.write(workdir / "tls" / "key.pem", key, 0o600)
        saas = thirdparty.saas_inbound(
            lab.plan, topology, odoo_url=odoo_url(topology), login=odoo_user(lab.stack)[0], password_file=str(state.secrets / "odoo.password"),
            cert=str(cert), key=str(key_path), local_parts=tuple(dict.fromkeys([*lab.stack.inbound.aliases, lab.stack.odoo.catchall, lab.stack.odoo.bounce, PROBE_ALIAS,
                                              # assumed: Odoo's servers accept the RFC 5321/2142 role mailboxes (smtp.postmaster tells live)
                                              "postmaster", "abuse"])),
        )
    return thirdparty.Simulation(tuple(relays), tuple(saas))


class Services(Role):
    """The simulated third parties' mail servers (``mailstack.lab.services``)."""

    name = "services"
    processes = ("services",)

    def start(self, lab: Lab, fresh: bool) -> None:
        _python_service(lab, "services", "mailstack.lab.services", simulation(lab).as_json())


def policy_hosts(lab: Lab) -> tuple[Host, ...]:
    """Who serves ``mta-sts.<domain>``: the gateways (``mtaSts.serve: gateway``; the plan
    points the name at the primary by CNAME), else a lab host of its own per domain
    (another web server)."""
    stack = lab.stack
    if stack.mta_sts and stack.mta_sts.serve == "gateway":
        return tuple(lab.topology.host(g.hostname) for g in stack.gateways)  # each serves it, as deployed
    return lab.topology.of_role("mta-sts")


class MtaStsHosts(Role):
    """``https://mta-sts.<domain>/.well-known/mta-sts.txt`` for every domain: Debian's
    nginx with the site a gateway deploys (``mailstack.lab.nginx``), on port 443 of each
    policy host's lab address, with a lab CA certificate for those names."""

    name = "mta-sts"
    processes = ("mta-sts",)

    def start(self, lab: Lab, fresh: bool) -> None:
        hosts = policy_hosts(lab)
        chain, key = lab.state.authority().issue([mta_sts.policy_host(d) for d in lab.stack.domains])
        workdir = private_dir(lab.state.role_dir("mta-sts"))
        site = nginx.PolicySite(workdir, tuple((a, nginx.HTTPS_PORT) for h in hosts for a in h.addresses))
        site.write(lab.plan, str(files.write(workdir / "chain.pem", chain)), str(files.write(workdir / "key.pem", key, 0o600)))
        log = files.log_file(workdir, "mta-sts.log")
        process = site.start(log)
        lab.state.record("mta-sts", process.pid, str(site.config))


def for_lab(lab: Lab) -> list[Role]:
    """The roles a stack needs, DNS first."""
    found: list[Role] = [Dns(), Records(), Odoo(), IndependentReceiver(lab.stack)]
    aliasd = lab.stack.gateway is not None and render.needs_aliasd(lab.plan, lab.stack.gateway)
    mailgated = lab.stack.gateway is not None and render.runs_mailgated(lab.plan, lab.stack.gateway)
    found += [GatewayHost(g, aliasd, mailgated, lab.stack.forwards_through_gateways) for g in lab.stack.gateways]
    third_parties = any(s.kind in SENDER_HOSTS for s in lab.declared.outbound) or lab.topology.spf_sources
    if third_parties or saas_receives(lab.stack):
        found.append(Services())
    if lab.stack.mta_sts and policy_hosts(lab):
        found.append(MtaStsHosts())
    wanted = desired(lab.plan)
    if wanted.alias_domains or wanted.mail_server or wanted.incoming_server:
        found.append(OdooSettings())
    return found


def start_all(lab: Lab, roles: Sequence[Role], *, fresh: bool) -> None:
    """DNS and the records first (a conflict with a seeded zone then leaves BIND up
    with the zone as seeded and starts nothing else), then every other role at once;
    their failures are raised together."""
    first = [r for r in roles if r.name in ("bind", "records")]
    last = [r for r in roles if isinstance(r, OdooSettings)]
    rest = [r for r in roles if r not in first and r not in last]
    for role in first:
        role.start(lab, fresh)
    with cf.ThreadPoolExecutor(max_workers=max(1, len(rest)), thread_name_prefix="role") as pool:
        futures = {pool.submit(role.start, lab, fresh): role for role in rest}
        errors = []
        for future in cf.as_completed(futures):
            error = future.exception()
            if error is not None:
                errors.append(f"{futures[future].name}: {error}")
    if errors:
        raise LabError("; ".join(sorted(errors)))
    for role in last:
        role.start(lab, fresh)


def restart_bind(state: LabState) -> int:
    """Start named again on its existing configuration and zone files: the dynamic
    zones come back from BIND's journal, as after a real restart."""
    workdir = state.role_dir("bind")
    conf = workdir / "named.conf"
    log = workdir / "named.log"
    before = log.read_text(errors="replace").count("running") if log.exists() else 0
    process = spawn([binary("named"), "-f", "-c", str(conf)], files.log_file(workdir, "named.stderr"))
    state.record("bind", process.pid, str(conf))
    until(lambda: log.exists() and log.read_text(errors="replace").count("running") > before, 30, "named to load its zones", process)
    return process.pid

