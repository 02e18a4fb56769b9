"""``mailstack lab`` operations: preflight, up, down, status — outside and inside the namespace.

The host side (``prepare``/``down``/``processes``) checks root and packages, creates the
namespace with its resolver, and stops processes by PID; the inside side
(``start``/``provision_records``/``live_records``) runs in the namespace (the CLI
re-executes itself there with ``ip netns exec``), so every server it starts, and every
DNS, SMTP and XML-RPC call it makes, stays on the lab's loopback.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mailstack import plan as planning
from mailstack.core.errors import MailstackError
from mailstack.core.model import MailDomain
from mailstack.core.record import Record
from mailstack.lab import binaries, netns, postfix, provision, roles
from mailstack.lab.binaries import binary
from mailstack.lab.seed import Seed
from mailstack.lab.state import LabState, Process
from mailstack.lab.topology import TSIG_KEY_NAME, Topology
from mailstack.plan import Plan
from mailstack.plan.changes import ChangeSet

#: Python modules the lab imports, and the PyPI distribution providing each.
PYTHON_MODULES = {"aiosmtpd": "aiosmtpd", "spf": "pyspf", "dkim": "dkimpy", "publicsuffixlist": "publicsuffixlist"}
#: Order of shutdown: senders first, DNS last.
STOP_ORDER = ("postfix", "aliasd", "opendkim", "recipient", "odoo", "bind")
INSIDE_ENV = "MAILSTACK_LAB_INSIDE"


class LabUnavailable(MailstackError):
    """The lab cannot run on this machine (not root, a package missing)."""


def preflight() -> None:
    """Refuse early, saying exactly what to do: be root, install these packages."""
    if os.geteuid() != 0:
        raise LabUnavailable(
            "the lab needs root: it creates a network namespace and runs BIND, Postfix and OpenDKIM "
            "(run it with sudo, as root)"
        )
    missing = binaries.missing_packages()
    if missing:
        raise LabUnavailable(
            f"missing Debian package(s): {', '.join(missing)}; install with: "
            f"apt-get install -y --no-install-recommends {' '.join(missing)}"
        )
    if not postfix.runs_as(roles.MAILGATE_USER):
        raise LabUnavailable(
            f"the mailgate runs as {roles.MAILGATE_USER} with {postfix.mailgate_python()}, which that user cannot "
            "run; install the system Python with: apt-get install -y --no-install-recommends python3"
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


ROLES = frozenset({"bind", "odoo", "recipient", "opendkim", "postfix", "aliasd"})


@dataclass(frozen=True, slots=True)
class Prepared:
    """What ``prepare`` found: a lab already running, one to repair, or a fresh one."""

    state: LabState
    running: bool
    repair: frozenset[str] = frozenset()


def dead_roles(state: LabState) -> frozenset[str]:
    """The lab's roles without a live process."""
    return ROLES - {p.role for p in state.processes if p.alive()}


def check_state_dir(state_dir: Path) -> None:
    """Refuse a state directory below a directory others may write to (like /tmp):
    OpenDKIM will not use a key there (RequireSafeKeys), and nor should we."""
    for directory in [state_dir.resolve(), *state_dir.resolve().parents]:
        if directory.exists() and directory.stat().st_mode & 0o022:
            raise MailstackError(
                f"--state-dir {state_dir}: {directory} is writable by others, so the lab's keys would not be "
                "safe there (OpenDKIM refuses them); use a directory such as /var/lib/mailstack-lab"
            )


def prepare(state_dir: Path, topology: Topology, stack_file: Path, seeds: tuple[str, ...] = ()) -> Prepared:
    """Host side of ``lab up``: a running lab is kept (idempotent), one with dead roles
    is repaired in place (a restarted BIND keeps its zones), anything else is cleaned
    up and its namespace (re)created with the lab's resolver."""
    preflight()
    check_state_dir(state_dir)
    state = LabState.load(state_dir)
    state.prepare()
    os.chmod(state.root, 0o711)  # service users traverse to their role directories
    # Seeds make a lab only when given: `lab up` without --seed-zone keeps a seeded lab.
    same_seeds = not seeds or state.seeds == list(seeds)
    same_lab = state.namespace == topology.namespace and state.stack_file == str(stack_file.resolve()) and same_seeds
    if same_lab and state.processes and netns.exists(topology.namespace):
        dead = dead_roles(state)
        return Prepared(state, not dead, dead)
    if state.processes or netns.exists(topology.namespace):
        down(state_dir, topology.namespace)
        state = LabState.load(state_dir)
    state.namespace, state.stack_file, state.seeds = topology.namespace, str(stack_file.resolve()), list(seeds)
    state.processes = []
    state.save()
    netns.create(topology.namespace, nameserver=topology.bind_address)
    return Prepared(state, False)


def down(state_dir: Path, namespace: str, *, purge: bool = False) -> list[str]:
    """Stop every recorded process by PID, then any process left in the namespace,
    delete the namespace; ``purge`` also removes the state directory (keys included)."""
    state = LabState.load(state_dir)
    stopped: list[str] = []
    order = {role: index for index, role in enumerate(STOP_ORDER)}
    for process in sorted(state.processes, key=lambda p: order.get(p.role, -1)):
        if process.stop():
            stopped.append(f"{process.role} (pid {process.pid})")
    if netns.exists(namespace):
        for pid in _namespace_pids(namespace):
            # Only descendants of what we started can live in the lab's private
            # namespace (e.g. a mailgate Postfix had piped to): stop them by PID.
            if Process("leftover", pid, "").stop():
                stopped.append(f"leftover (pid {pid})")
        netns.delete(namespace)
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


# -- inside the namespace ----------------------------------------------------------------


def lab_plan(state_dir: Path, stack: MailDomain) -> Plan:
    """The stack's plan with the lab's own gateway DKIM key (kept in the state dir)."""
    state = LabState.load(state_dir)
    public = LabState.public_key_pem(state.dkim_private_key(stack.dkim.selector, stack.dkim.bits))
    return planning.build(stack, public)


def start(state_dir: Path, plan: Plan, topology: Topology, seeds: tuple[Seed, ...] = ()) -> ChangeSet:
    """Start every role (DNS first, its zones seeded, then publish the records, then the
    mail path). A conflict with the seeded zones (ConflictError) leaves BIND running with
    the zones exactly as seeded and starts nothing else."""
    state = LabState.load(state_dir)
    (state.root / JOURNAL).unlink(missing_ok=True)  # a fresh BIND has only the seeded records
    # We run inside the lab's namespace: its lo must be up (else every 127.x packet is
    # dropped) and carry each role's address.
    result = subprocess.run([binary("ip"), "link", "set", "lo", "up"], capture_output=True, text=True)
    if result.returncode:
        raise MailstackError(f"ip link set lo up in namespace {topology.namespace}: {result.stderr.strip()}")
    for address in topology.addresses.values():
        netns.add_address(address)
    roles.start_bind(state, plan, topology, seeds)
    changes = provision_records(state_dir, plan, topology)
    roles.start_odoo(state, plan, topology)
    roles.start_recipient(state, topology)
    roles.start_gateway(state, plan, topology)
    return changes


def repair(state_dir: Path, plan: Plan, topology: Topology) -> list[str]:
    """Restart the roles whose process died; the others keep running."""
    state = LabState.load(state_dir)
    dead = dead_roles(state)
    if "bind" in dead:
        roles.restart_bind(state)
    if "odoo" in dead:
        roles.start_odoo(state, plan, topology)
    if "recipient" in dead:
        roles.start_recipient(state, topology)
    if dead & {"opendkim", "postfix", "aliasd"}:
        for process in state.processes:
            if process.role in ("postfix", "opendkim", "aliasd"):
                process.stop()
        roles.start_gateway(state, plan, topology)
    return sorted(dead)


JOURNAL = "records.json"


def provision_records(state_dir: Path, plan: Plan, topology: Topology) -> ChangeSet:
    """Publish the plan's records with the RFC 2136 resource's operations, all or
    nothing (idempotent: a second run writes nothing)."""
    state = LabState.load(state_dir)
    key_name = plan.stack.dns.tsig_key_name or TSIG_KEY_NAME
    wanted = provision.desired(plan, topology.bind_address, topology.bind_port, key_name, state.tsig_secret())
    return provision.apply(wanted, state.root / JOURNAL)


def live_records(state_dir: Path, plan: Plan, topology: Topology) -> list[tuple[Record, bool]]:
    """Each record the lab published, and whether BIND serves it as written."""
    state = LabState.load(state_dir)
    key_name = plan.stack.dns.tsig_key_name or TSIG_KEY_NAME
    server = provision.desired(plan, topology.bind_address, topology.bind_port, key_name, state.tsig_secret())
    return provision.live(state.root / JOURNAL, server)
