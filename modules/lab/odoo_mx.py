"""Odoo Online's MX for ``<db>.odoo.com`` in the lab: a receiver nobody here wrote.

What stands for Odoo's own mail servers when a stack redirects its aliases there
(``inbound.mode: forward`` through the gateways): Debian's Postfix judging SPF with
Debian's ``postfix-policyd-spf-python`` (its verdict in an ``Authentication-Results``
header, parsed with ``authres`` by whoever reads the mail), delivering every message for
``<db>.odoo.com`` into a Maildir. Configured as /work/research/receiver.md found works:
policyd-spf's ``skip_addresses`` set to a harmless TEST-NET address (its default skips
all of 127.0.0.0/8, an empty value crashes it), ``TestOnly`` so verdicts are recorded,
not enforced. No chroot, ``maillog_file``, ``postfix check`` before start, stopped by
the master's PID.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import signal
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import authres

from mailstack.lab.binaries import binary
from mailstack.lab.postfix import LabError, _alive, _run, can_connect, wait_for

MAILDIR_USER = "nobody"


@dataclass
class OdooMx:
    """The MX of ``domain`` (``<db>.odoo.com``) on ``address:25`` inside ``netns``."""

    workdir: Path
    address: str
    hostname: str
    domain: str
    netns: str | None = None
    master_pid: int | None = None

    @property
    def config_dir(self) -> Path:
        return self.workdir / "postfix"

    @property
    def maildir(self) -> Path:
        return self.workdir / "mail" / self.domain

    def install(self) -> None:
        work = self.workdir
        for directory in (self.config_dir, work / "spool", work / "data", work / "policyd-spf", self.maildir):
            directory.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o755)
        postfix = pwd.getpwnam("postfix")
        os.chown(work / "data", postfix.pw_uid, postfix.pw_gid)
        nobody = pwd.getpwnam(MAILDIR_USER)
        for directory in (work / "mail", self.maildir):
            os.chown(directory, nobody.pw_uid, nobody.pw_gid)
        (work / "policyd-spf" / "policyd-spf.conf").write_text(
            "debugLevel = 1\nTestOnly = 1\nHELO_reject = False\nMail_From_reject = False\nPermError_reject = False\n"
            "TempError_Defer = False\nskip_addresses = 192.0.2.0/32\nHeader_Type = AR\nHide_Receiver = No\n"
            f"Authserv_Id = {self.hostname}\n")
        (self.config_dir / "main.cf").write_text(f"""# Odoo Online's MX ({self.domain}) in the lab: mailstack.lab.odoo_mx.
compatibility_level = 3.6
queue_directory = {work}/spool
data_directory = {work}/data
maillog_file = {work}/postfix.log
maillog_file_prefixes = /var, /dev/stdout, {work}
syslog_name = postfix-odoo-mx
myhostname = {self.hostname}
mydomain = {self.domain}
myorigin = {self.domain}
mydestination =
inet_interfaces = {self.address}
inet_protocols = ipv4
mynetworks = {self.address}/32
smtp_bind_address = {self.address}
relay_domains =
default_transport = error:this lab host does not send mail
biff = no
append_dot_mydomain = no
smtputf8_enable = no
virtual_mailbox_domains = {self.domain}
virtual_mailbox_base = {work}/mail
virtual_mailbox_maps = inline:{{ @{self.domain}={self.domain}/ }}
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
policyd-spf_time_limit = 3600
smtpd_helo_required = yes
smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service unix:private/policyd-spf, permit
alias_maps =
alias_database =
""")
        services = ("pickup unix n - n 60 1 pickup", "cleanup unix n - n - 0 cleanup", "qmgr unix n - n 300 1 qmgr",
                    "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce", "defer unix - - n - 0 bounce",
                    "trace unix - - n - 0 bounce", "verify unix - - n - 1 verify", "flush unix n - n 1000? 0 flush",
                    "proxymap unix - - n - - proxymap", "smtp unix - - n - - smtp", "relay unix - - n - - smtp",
                    "showq unix n - n - - showq", "error unix - - n - - error", "retry unix - - n - - error",
                    "discard unix - - n - - discard", "virtual unix - n n - - virtual", "anvil unix - - n - 1 anvil",
                    "scache unix - - n - 1 scache", "postlog unix-dgram n - n - 1 postlogd")
        (self.config_dir / "master.cf").write_text(
            f"{self.address}:smtp inet n - n - - smtpd\n" + "\n".join(services) + "\n"
            f"policyd-spf unix - n n - 0 spawn\n  user=policyd-spf argv={binary('policyd-spf')} {work}/policyd-spf/policyd-spf.conf\n")
        result = _run([binary("postfix"), "-c", str(self.config_dir), "check"], self.netns, check=False)
        if result.returncode or "fatal" in result.stderr:
            raise LabError(f"postfix check (Odoo MX): {result.stderr.strip()}")

    def start(self) -> None:
        self.install()
        _run([binary("postfix"), "-c", str(self.config_dir), "start"], self.netns)
        pid_file = self.workdir / "spool" / "pid" / "master.pid"
        self.master_pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, what="the Odoo MX's master.pid"))
        wait_for(lambda: can_connect(self.address, 25, self.netns), 30, what=f"SMTP on {self.address}:25")

    def stop(self) -> None:
        if self.master_pid is None:
            return
        _run([binary("postfix"), "-c", str(self.config_dir), "stop"], self.netns, check=False)
        pid = self.master_pid
        try:
            wait_for(lambda: not _alive(pid), 30, what=f"postfix master {pid} to exit")
        except LabError:
            os.kill(pid, signal.SIGKILL)
        self.master_pid = None

    def received(self) -> list[EmailMessage]:
        """Every message delivered, parsed."""
        found = []
        for path in sorted((self.maildir / "new").glob("*")) if (self.maildir / "new").exists() else []:
            parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
        return found

    def spf(self, message: EmailMessage) -> tuple[str, str]:
        """(result, smtp.mailfrom) of policyd-spf's Authentication-Results header (it
        writes the envelope sender's domain there, the full address in a comment)."""
        for header in message.get_all("Authentication-Results", []):
            parsed = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {header}")
            if parsed.authserv_id != self.hostname:
                continue
            for result in parsed.results:
                if result.method == "spf":
                    return str(result.result), str(getattr(result, "smtp_mailfrom", "") or "")
        return "none", ""

    def __enter__(self) -> OdooMx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
