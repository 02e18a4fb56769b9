"""The independent receiver: a mailbox provider built from Debian's packages.

Postfix receives on port 25 of every receiving host of the lab (``mx.recipient.test``,
its IPv6-only twin ``mx.v6.recipient.test``, and the mailbox provider's MX of a stack
that keeps its mailboxes elsewhere — Microsoft 365's
``<domain>.mail.protection.outlook.com``, Google's ``smtp.google.com``), runs
postfix-policyd-spf-python for SPF (``Received-SPF``), OpenDKIM in verify mode and then
OpenDMARC as milters over unix sockets (``Authentication-Results``), and delivers
every message into a Maildir. The e2e checks read the verdicts from those headers
(``mailstack.checks.probes.verdicts``, parsed with authres); no mailstack code decides
a verdict here. The configuration follows /work/research/receiver.md, whose pitfalls
it avoids: policyd-spf's default ``skip_addresses`` skips all of 127.0.0.0/8,
libunbound answers ``.test`` with NXDOMAIN unless told ``local-zone nodefault``,
OpenDMARC ignores 127.0.0.1 by default and reads OpenDKIM's result (so OpenDKIM comes
first), forged Authentication-Results are removed (``RemoveARAll``). It is the project's
one receiver configuration: the gateway deploy tests start this class too
(``tests/receiver.py``, in their own namespace, ``netns``).
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mailstack.lab import files, users
from mailstack.lab.binaries import binary
from mailstack.lab.postfix import LabError, can_connect, postfix_command, settle
from mailstack.lab.process import spawn, unix_accepts, until
from mailstack.lab.state import LabState, private_dir
from mailstack.lab.topology import RECEIVER, RECIPIENT6_DOMAIN, RECIPIENT_DOMAIN, Topology

#: The authserv-id of every verdict header the receiver adds (its host name).
AUTHSERV_ID = RECEIVER
#: Debian's Public Suffix List (package publicsuffix, a dependency of opendmarc).
SYSTEM_PSL = "/usr/share/publicsuffix/public_suffix_list.dat"
#: The reserved TLDs lab stacks use, as the public suffixes they are (RFC 2606, 6761).
LAB_SUFFIXES = "\n// ===BEGIN mailstack lab===\n// reserved TLDs of documentation and test names (RFC 2606, RFC 6761)\nexample\ntest\n// ===END mailstack lab===\n"
#: Local parts a mailbox provider's domain hosts besides the stack's aliases.
PROBE_MAILBOX = "probe"


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """What the receiver serves: its addresses, its domains and their mailboxes."""

    addresses: tuple[str, ...]
    #: Domains whose every local part is accepted (the lab's own recipient domains).
    catchall_domains: tuple[str, ...]
    #: Mailboxes of the mailbox provider's domains (unknown ones refused at RCPT).
    mailboxes: tuple[str, ...]
    names: tuple[str, ...]  # every host name it answers as (its TLS certificate)
    #: Where OpenDKIM's libunbound asks (the lab's BIND) and on which port.
    nameserver: str
    dns_port: int = 53
    #: The one Maildir (under ``mail/``) every mailbox of the stack's domains goes to,
    #: when the provider keeps them in one shared mailbox that Odoo fetches by IMAP
    #: (``inbound.imap``): the aliases are the mailbox's addresses, as a Microsoft 365
    #: shared mailbox's or a Google group's are. None: one Maildir per address.
    shared_mailbox: str | None = None
    #: Its own name: myhostname and the authserv-id of every verdict header it adds.
    hostname: str = AUTHSERV_ID
    domain: str = RECIPIENT_DOMAIN


def config(topology: Topology, mailbox_domains: Sequence[str], local_parts: Sequence[str],
           shared_mailbox: str | None = None) -> ReceiverConfig:
    """The receiver of a topology: the recipient hosts and the mailbox provider's MX."""
    hosts = [*topology.of_role("receiver"), *topology.of_role("mailbox")]
    mailboxes = tuple(sorted({f"{local}@{domain}" for domain in mailbox_domains for local in (*local_parts, PROBE_MAILBOX)}))
    return ReceiverConfig(
        addresses=tuple(a for h in hosts for a in h.addresses),
        catchall_domains=(RECIPIENT_DOMAIN, RECIPIENT6_DOMAIN),
        mailboxes=mailboxes,
        names=tuple(h.name for h in hosts),
        nameserver=topology.bind_address,
        dns_port=topology.dns_port,
        shared_mailbox=shared_mailbox,
    )


class Receiver:
    """The receiver's four daemons in one directory: the lab's ``receiver/`` role, or
    a test's own (``tests/receiver.py``, in a namespace of the test's: ``netns``).
    ``record`` is told every daemon started (the lab's journal of PIDs)."""

    def __init__(self, workdir: Path, receiver: ReceiverConfig, certificate: tuple[bytes, bytes], *,
                 netns: str | None = None, record: Callable[[str, int, str], None] | None = None) -> None:
        self.workdir = workdir
        self.receiver = receiver
        self.certificate = certificate
        self.netns = netns
        self.record = record
        #: What ``start`` started, for a caller without a journal (``tests/receiver.py``).
        self.milters: list[subprocess.Popen[bytes]] = []
        self.master_pid: int | None = None

    @classmethod
    def of_lab(cls, state: LabState, receiver: ReceiverConfig) -> Receiver:
        """The lab's receiver: its role directory, a certificate of the stack's lab CA."""
        return cls(state.role_dir("receiver"), receiver, state.authority().issue(list(receiver.names)), record=state.record)

    @property
    def maildir(self) -> Path:
        return self.workdir / "mail"

    def catchall(self, domain: str) -> Path:
        """The Maildir of every local part of a catch-all domain."""
        return self.maildir / domain / "catchall"

    def install(self) -> None:
        work, receiver = self.workdir, self.receiver
        uid, gid = users.ids(users.MAILBOX_USER)
        postfix_gid = pwd.getpwnam("postfix").pw_gid
        for sub in ("postfix", "policyd-spf", "opendkim", "opendmarc", "run", "spool"):
            (work / sub).mkdir(exist_ok=True)
            os.chmod(work / sub, 0o755)
        private_dir(work / "tls")  # smtpd reads its key as root, before dropping privileges
        private_dir(work / "mail", owner=users.MAILBOX_USER)
        private_dir(work / "data", owner="postfix")
        private_dir(work / "run" / "opendkim", owner="opendkim", group=postfix_gid, mode=0o750)
        private_dir(work / "run" / "opendmarc", owner="opendmarc", group=postfix_gid, mode=0o750)
        files.log_file(work / "log", "postfix.log")
        values = {
            "workdir": work, "hostname": receiver.hostname, "domain": receiver.domain, "addresses": receiver.addresses,
            "ipv6": any(":" in a for a in receiver.addresses),
            "networks": [f"[{a}]/128" if ":" in a else f"{a}/32" for a in receiver.addresses],
            "domains": sorted({*receiver.catchall_domains, *(m.split("@")[1] for m in receiver.mailboxes)}),
            "mail_user": users.MAILBOX_USER, "uid": uid, "gid": gid,
            "catchall_domains": receiver.catchall_domains, "nameserver": receiver.nameserver,
            "port": receiver.dns_port, "local_zones": ["test."],
        }
        for template, target in (
            ("main.cf.j2", "postfix/main.cf"), ("master.cf.j2", "postfix/master.cf"),
            ("policyd-spf.conf.j2", "policyd-spf/policyd-spf.conf"), ("opendkim.conf.j2", "opendkim/opendkim.conf"),
            ("unbound.conf.j2", "opendkim/unbound.conf"), ("opendmarc.conf.j2", "opendmarc/opendmarc.conf"),
        ):
            files.write(work / target, files.render(f"receiver/{template}", **values))
        files.write(work / "postfix/mailboxes", files.render("receiver/mailboxes.j2", **{**values, "mailbox_addresses": receiver.mailboxes,
                                                                           "shared_mailbox": receiver.shared_mailbox}))
        system_list = Path(SYSTEM_PSL).read_text(encoding="utf-8")
        files.write(work / "opendmarc/public_suffix_list.dat", system_list + LAB_SUFFIXES)
        files.write(work / "opendmarc/ignore.hosts", "# OpenDMARC ignores only this TEST-NET-1 address: every lab client is evaluated\n192.0.2.1\n")
        settle(work / "postfix")
        chain, key = self.certificate
        files.write(work / "tls/chain.pem", chain)
        files.write(work / "tls/key.pem", key, 0o600)

    def _command(self, command: list[str]) -> list[str]:
        return [binary("ip"), "netns", "exec", self.netns, *command] if self.netns else command

    def start(self) -> None:
        """Milters first (Postfix tempfails mail while they are missing), then Postfix."""
        self.install()
        work = self.workdir
        for name, command in (
            ("opendkim", [binary("opendkim"), "-f", "-x", str(work / "opendkim/opendkim.conf")]),
            ("opendmarc", [binary("opendmarc"), "-f", "-c", str(work / "opendmarc/opendmarc.conf")]),
        ):
            socket_path = work / "run" / name / "sock"
            socket_path.unlink(missing_ok=True)
            log = work / "log" / f"{name}.log"
            process = spawn(self._command(command), log)  # ip netns exec execs: the PID is the milter's
            self.milters.append(process)
            if self.record:
                self.record(f"receiver-{name}", process.pid, str(work))
            until(partial(unix_accepts, socket_path), 30, f"the receiver's {name}", process, log)
        self.master_pid = postfix_command(work / "postfix", "start", work / "log" / "postfix.log", netns=self.netns)
        if self.record:
            self.record("receiver-postfix", self.master_pid, "master")
        first = self.receiver.addresses[0]
        until(lambda: can_connect(first, 25, self.netns), 30, f"the receiver's SMTP on {first}:25")


def check_config(workdir: Path) -> None:
    """``opendkim -n`` and ``opendmarc -n`` on the rendered files (tests call it)."""
    for program, flag, path in (("opendkim", "-x", "opendkim/opendkim.conf"), ("opendmarc", "-c", "opendmarc/opendmarc.conf")):
        result = subprocess.run([binary(program), "-n", flag, str(workdir / path)], capture_output=True, text=True)
        if result.returncode:
            raise LabError(f"{program} -n: {(result.stderr or result.stdout).strip()}")
