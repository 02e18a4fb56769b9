"""``mailstack lab`` operations: preflight, up, down, status — outside and inside the namespace.

The host side (``prepare``/``down``/``processes``) checks root and packages, creates the
namespace with its resolver, and stops processes by PID; the inside side
(``start``/``repair``/``live_records``) runs in the namespace (the CLI re-executes
itself there with ``ip netns exec``), so every server it starts, and every DNS, SMTP,
HTTPS and XML-RPC call it makes, stays on the lab's loopback.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from mailstack import plan as planning
from mailstack.core.errors import MailstackError
from mailstack.core.model import MailDomain
from mailstack.core.record import Record
from mailstack.lab import binaries, gateway, netns, postfix, provision, roles, rotation, translate, users
from mailstack.lab.binaries import binary
from mailstack.lab.seed import Seed
from mailstack.lab.state import LabState, Process
from mailstack.lab.topology import TSIG_KEY_NAME, Topology
from mailstack.plan import Plan
from mailstack.plan.changes import ChangeSet

#: Python modules the lab imports, and the PyPI distribution providing each.
PYTHON_MODULES = {"aiosmtpd": "aiosmtpd", "spf": "pyspf", "dkim": "dkimpy", "authres": "authres", "publicsuffixlist": "publicsuffixlist"}
INSIDE_ENV = "MAILSTACK_LAB_INSIDE"
#: Processes of these kinds get ``roles.MILTER_GRACE`` after SIGTERM (see there).
MILTERS = ("opendkim", "opendmarc")


class LabUnavailable(MailstackError):
    """The lab cannot run on this machine (not root, a package missing)."""


def preflight() -> None:
    """Refuse early, saying exactly what to do: be root, install these packages."""
    if os.geteuid() != 0:
        raise LabUnavailable(
            "the lab needs root: it creates a network namespace and runs BIND, Postfix, OpenDKIM and OpenDMARC "
            "(run it with sudo, as root)"
        )
    missing = binaries.missing_packages()
    if missing:
        raise LabUnavailable(
            f"missing Debian package(s): {', '.join(missing)}; install with: "
            f"apt-get install -y --no-install-recommends {' '.join(missing)}"
        )
    absent = sorted({dist for module, dist in PYTHON_MODULES.items() if importlib.util.find_spec(module) is None})
    if absent:
        raise LabUnavailable(f"missing Python package(s): {', '.join(absent)}; install with: pip install -e . (or pip install {' '.join(absent)})")


def inside(namespace: str) -> bool:
    """True when this process runs in the lab's namespace (re-executed by the CLI)."""
    if os.environ.get(INSIDE_ENV) != namespace:
        return False
    result = subprocess.run([binary("ip"), "netns", "identify", str(os.getpid())], capture_output=True, text=True)
    return result.stdout.strip() == namespace


# -- host side -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """What ``prepare`` found: a lab already running, one to repair, or a fresh one."""

    state: LabState
    running: bool
    repair: bool = False


#: The longest state directory: Postfix's and the milters' unix sockets live below it
#: (``stacks/<id>/receiver/spool/private/policyd-spf`` is 62 bytes more) and a socket
#: path may not exceed 107 bytes.
MAX_STATE_DIR = 45


def check_state_dir(state_dir: Path) -> None:
    """Refuse a state directory below a directory others may write to (like /tmp):
    OpenDKIM will not use a key there (RequireSafeKeys), and nor should we. Refuse one
    so long that the lab's unix sockets could not be made below it."""
    if len(str(state_dir.resolve())) > MAX_STATE_DIR:
        raise MailstackError(
            f"--state-dir {state_dir}: at most {MAX_STATE_DIR} characters (the lab's unix sockets live below it, "
            "and a socket path may not exceed 107 bytes); use a shorter one such as /var/lib/mailstack-lab"
        )
    for directory in [state_dir.resolve(), *state_dir.resolve().parents]:
        if directory.exists() and directory.stat().st_mode & 0o022:
            raise MailstackError(
                f"--state-dir {state_dir}: {directory} is writable by others, so the lab's keys would not be "
                "safe there (OpenDKIM refuses them); use a directory such as /var/lib/mailstack-lab"
            )


def prepare(state_dir: Path, topology: Topology, stack_file: Path, seeds: tuple[str, ...] = (), *, dnssec: bool = False) -> Prepared:
    """Host side of ``lab up``: a running lab of the same stack (and seeds) is kept
    (idempotent), one with dead processes is repaired in place; anything else — another
    stack, other seed zones, no namespace — is brought down and its namespace
    (re)created with the lab's resolver. ``seeds`` are the seed files' digests."""
    preflight()
    users.ensure()
    if not postfix.runs_as(users.MAILGATE_USER):
        raise LabUnavailable(
            f"the mailgate runs as {users.MAILGATE_USER} with {postfix.mailgate_python()}, which that user cannot "
            "run; install the system Python with: apt-get install -y --no-install-recommends python3"
        )
    check_state_dir(state_dir)
    state = LabState.load(state_dir)
    # Seeds make a lab only when given: `lab up` without --seed-zone keeps a seeded lab.
    same_seeds = not seeds or state.seeds == list(seeds)
    # So does --dnssec: `lab up` without it keeps a signed lab (`lab down` first to unsign).
    same_lab = (state.namespace == topology.namespace and state.stack_file == str(stack_file.resolve()) and same_seeds
                and (not dnssec or state.dnssec))
    if same_lab and state.processes and netns.exists(topology.namespace):
        running = all(p.alive() for p in state.processes)
        return Prepared(state, running, repair=not running)
    if state.processes or netns.exists(topology.namespace) or (state.namespace and netns.exists(state.namespace)):
        down(state_dir, state.namespace or topology.namespace)
        if state.namespace != topology.namespace and netns.exists(topology.namespace):
            down(state_dir, topology.namespace)
        state = LabState.load(state_dir)
    state.namespace, state.stack_file, state.seeds = topology.namespace, str(stack_file.resolve()), list(seeds)
    state.dnssec = dnssec
    state.processes = []
    state.prepare()
    state.open_to_roles()
    state.save()
    netns.create(topology.namespace, nameserver=topology.bind_address)
    return Prepared(state, False)


def _stop(process: Process) -> str | None:
    grace = roles.MILTER_GRACE if process.role.endswith(MILTERS) else 10.0
    return f"{process.role} (pid {process.pid})" if process.stop(grace) else None


def down(state_dir: Path, namespace: str, *, purge: bool = False) -> list[str]:
    """Stop every recorded process by PID — the Postfix instances first (so no mail is
    mid-flight through a milter), then the rest at once — then any process left in the
    namespace; delete the namespace; empty the stack's mail queues (no old mail reaches
    the next lab). ``purge`` also removes the state directory (keys included)."""
    state = LabState.load(state_dir)
    namespace = state.namespace or namespace
    masters = [p for p in state.processes if p.role.endswith("postfix")]
    others = [p for p in state.processes if not p.role.endswith("postfix")]
    stopped: list[str] = []
    with cf.ThreadPoolExecutor(max_workers=max(1, len(state.processes))) as pool:
        for batch in (masters, others):
            stopped += [name for name in pool.map(_stop, batch) if name]
    if netns.exists(namespace):
        for pid in _namespace_pids(namespace):
            # Only descendants of what we started can live in the lab's private
            # namespace (e.g. a mailgate Postfix had piped to): stop them by PID.
            if Process("leftover", pid, "").stop():
                stopped.append(f"leftover (pid {pid})")
        netns.delete(namespace)
    if state.stack_file:
        for queue in [*state.stack_root.glob("gateway*/spool"), state.stack_root / "receiver" / "spool"]:
            shutil.rmtree(queue, ignore_errors=True)
    state.forget()
    if purge and state.root.exists():
        shutil.rmtree(state.root)
    return stopped


def _namespace_pids(namespace: str) -> list[int]:
    result = subprocess.run([binary("ip"), "netns", "pids", namespace], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def processes(state_dir: Path) -> list[tuple[Process, bool]]:
    """Each recorded process and whether it still runs."""
    return [(p, p.alive()) for p in LabState.load(state_dir).processes]


# -- the stack as the lab runs it ---------------------------------------------------------


def lab_plan(state: LabState, stack: MailDomain, topology: Topology) -> Plan:
    """The plan of the translated stack (``mailstack.lab.translate``) with the lab's
    gateway DKIM key and its keys for the third parties' declared ones."""
    keys = {kind: LabState.public_key_b64(pem) for kind, pem in roles.third_party_keys(state, stack).items()}
    public = LabState.public_key_pem(state.dkim_private_key(stack.dkim.selector, stack.dkim.bits))
    # A declared DKIM rotation publishes both keys; the gateway signs with the key of the
    # phase recorded in the stack's dkim-rotation.json (the previous one until `lab up`
    # saw the new key served and recorded the switch: `lab up` decides the phase anew
    # with what BIND serves, mailstack.lab.rotation; tests/test_lab_rotation.py walks it).
    previous = LabState.public_key_pem(state.dkim_private_key(stack.dkim.previous, stack.dkim.bits)) if stack.dkim.previous else None
    planned = planning.build(lab_dane(state, translate.lab_stack(stack, topology, keys)), public, previous)
    return rotation.recorded_plan(planned, rotation.read(rotation.path_of(state)))


def lab_dane(state: LabState, stack: MailDomain) -> MailDomain:
    """The gateways' TLSA digest is the lab key's (``LabState.gateway_tls_key``): in
    place of a declared one (the lab cannot hold the real key), and with ``--dnssec``
    even when none is declared, so DANE is proven live on the signed zones."""
    settings = stack.gateway
    if settings is None or not (settings.tls.dane or settings.tls.dane_hosts or state.dnssec):
        return stack
    key = serialization.load_pem_private_key(state.gateway_tls_key().encode(), password=None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    tls = dataclasses.replace(settings.tls, dane=(hashlib.sha256(spki).hexdigest(),), dane_hosts=())
    return dataclasses.replace(stack, gateway=dataclasses.replace(settings, tls=tls))


def make_lab(state_dir: Path, stack: MailDomain, topology: Topology, seeds: tuple[Seed, ...] = ()) -> roles.Lab:
    state = LabState.load(state_dir)
    return roles.Lab(state, stack, lab_plan(state, stack, topology), topology, seeds)


# -- inside the namespace ----------------------------------------------------------------


def add_addresses(topology: Topology) -> None:
    """Bring lo up and give it every lab address (one ``ip -batch`` call)."""
    commands = ["link set lo up"]
    for address in topology.addresses:
        if address == "127.0.0.1":
            continue
        # IPv6 on lo needs no duplicate address detection: usable at once
        commands.append(f"addr replace {address}/128 dev lo nodad" if ":" in address else f"addr replace {address}/32 dev lo")
    result = subprocess.run([binary("ip"), "-batch", "-"], input="\n".join(commands) + "\n", capture_output=True, text=True)
    if result.returncode:
        raise MailstackError(f"ip -batch in namespace {topology.namespace}: {result.stderr.strip()}")


def start(lab: roles.Lab) -> ChangeSet | None:
    """Start every role, DNS and the records first (a fresh lab: the zones empty or as
    seeded, empty queues). A conflict with the seeded zones (ConflictError) leaves BIND
    running with the zones exactly as seeded and starts nothing else."""
    (lab.state.stack_root / roles.JOURNAL).unlink(missing_ok=True)  # a fresh BIND has only the seeded records
    add_addresses(lab.topology)
    roles.start_all(lab, roles.for_lab(lab), fresh=True)
    return lab.changes


def repair(lab: roles.Lab) -> list[str]:
    """Restart the roles one of whose processes died; the others keep running. A
    restarted BIND keeps its zones (from its journal); the DKIM rotation's phase is
    decided from what BIND serves now, the records are published again, and the
    gateways' OpenDKIM put on the phase's signing tables."""
    state = lab.state
    alive = {p.role for p in state.processes if p.alive()}
    restarted = []
    add_addresses(lab.topology)
    for role in roles.for_lab(lab):
        if not role.processes or all(name in alive for name in role.processes):
            continue
        for process in state.processes:
            if process.role in role.processes:
                _stop(process)
        if isinstance(role, roles.Dns):
            roles.restart_bind(state)
        else:
            role.start(lab, False)
        restarted.append(role.name)
    roles.decide_rotation(lab)
    lab.changes = roles.publish(state, lab.plan, lab.topology)
    for declared in lab.stack.gateways:
        # An edited stack's rotation reaches the running gateways: OpenDKIM on the
        # phase's signing tables (restarted only when they changed), Postfix kept.
        if gateway.signing_changed(state, lab.plan, declared):
            name = f"{gateway.role_name(declared)}-opendkim"
            for process in [p for p in state.processes if p.role == name]:
                _stop(process)
            gateway.resign(state, lab.plan, declared)
            restarted.append(f"{name} (signing with {lab.plan.signing_selector})")
    return restarted


def live_records(lab: roles.Lab) -> list[tuple[Record, bool]]:
    """Each record the lab published, and whether BIND serves it as written."""
    state, plan, topology = lab.state, lab.plan, lab.topology
    key_name = plan.stack.dns.tsig_key_name or TSIG_KEY_NAME
    server = provision.desired(plan, topology.bind_address, topology.dns_port, key_name, state.tsig_secret())
    return provision.live(state.stack_root / roles.JOURNAL, server)
