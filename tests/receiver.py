"""An independent receiving MTA for the deploy tests: the lab's own receiver
(``mailstack.lab.receiver``: Postfix with ``postfix-policyd-spf-python``, OpenDKIM in
verify mode and OpenDMARC as milters, built from Debian's packages and configured by
``templates/lab/receiver/``), run in a network namespace of the caller's. One
configuration, so every receiving rule and pitfall of /work/research/receiver.md
(policyd-spf's ``skip_addresses``, libunbound's ``.test``, OpenDMARC's ignored
127.0.0.1, ``RemoveARAll``) is written once, for the lab and these tests alike.

The verdicts are what those programs wrote, read by the checks' own reader
(``mailstack.checks.probes.verdicts.receiver_verdict``: Authentication-Results with
``authres``, above the receiver's own Received line only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mailstack.checks.probes import verdicts
from mailstack.lab import tls, users
from mailstack.lab.process import stop_child
from mailstack.lab.receiver import Receiver as LabReceiver
from mailstack.lab.receiver import ReceiverConfig
from mailstack.lab.state import Process


@dataclass
class Receiver:
    """The receiving MX ``hostname`` of ``domain`` at ``address`` inside ``netns``,
    resolving through ``nameserver`` (port 53)."""

    workdir: Path
    netns: str
    address: str
    hostname: str
    domain: str
    nameserver: str
    server: LabReceiver | None = field(default=None, init=False)

    @property
    def maildir(self) -> Path:
        return self.workdir / "mail" / self.domain / "catchall"

    def start(self) -> None:
        users.ensure((users.MAILBOX_USER,))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o711)  # the service users reach their directories below
        config = ReceiverConfig(addresses=(self.address,), catchall_domains=(self.domain,), mailboxes=(),
                                names=(self.hostname,), nameserver=self.nameserver, hostname=self.hostname, domain=self.domain)
        self.server = LabReceiver(self.workdir, config, tls.self_signed([self.hostname]), netns=self.netns)
        self.server.start()

    def terminate(self) -> None:
        """Stop Postfix (by its master's PID), then signal the milters (they take a few
        seconds to exit: see ``wait``)."""
        if self.server is None:
            return
        if self.server.master_pid is not None:
            Process("receiver-postfix", self.server.master_pid, "master").stop()
        for process in self.server.milters:
            if process.poll() is None:
                process.terminate()

    def wait(self) -> None:
        for process in self.server.milters if self.server else []:
            stop_child(process, timeout=15)

    def messages(self) -> list[bytes]:
        """Every delivered message, oldest first."""
        new = self.maildir / "new"
        if not new.is_dir():
            return []
        return [path.read_bytes() for path in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)]


@dataclass(frozen=True)
class Verdict:
    spf: str
    spf_domain: str
    dkim: tuple[tuple[str, str, str], ...]  # (result, header.d, header.s)
    dmarc: str
    dmarc_from: str


def verdict(raw: bytes, authserv_id: str) -> Verdict:
    """The receiver's own results for one delivered message (``receiver_verdict``)."""
    found = verdicts.receiver_verdict(raw, authserv_id)
    return Verdict(
        found.spf or "none", (found.spf_domain or "").lower(),
        tuple((d.result, (d.domain or "").lower(), d.selector or "") for d in found.dkim),
        found.dmarc or "none", (found.dmarc_from or "").lower(),
    )
