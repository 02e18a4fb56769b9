"""A receiving MX nobody here wrote: Debian's Postfix delivering a domain into a Maildir.

Two third parties of the lab are one: **Odoo Online's MX** for ``<db>.odoo.com`` (where
a forward-mode gateway redirects aliases: ``OdooMx``), which judges SPF with Debian's
``postfix-policyd-spf-python`` (its verdict in an ``Authentication-Results`` header,
parsed with ``authres``), and the **mailbox provider** of an imap-mode stack
(``MailboxHost``), which delivers every address of the domain into the one mailbox
Odoo fetches, in Dovecot's Maildir. Configured as /work/research/receiver.md found
works: policyd-spf's ``skip_addresses`` set to a harmless TEST-NET address (its default
skips all of 127.0.0.0/8, an empty value crashes it), ``TestOnly`` so verdicts are
recorded, not enforced. No chroot, ``maillog_file``, ``postfix check`` before start,
stopped by the master's PID.
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

@dataclass
class MaildirMx:
    """The MX of ``domain`` on ``address:25`` inside ``netns``: every address of the
    domain into the Maildir ``mail_base/mailbox`` (owned by ``user``); with ``spf``,
    policyd-spf records its verdict."""

    workdir: Path
    address: str
    hostname: str
    domain: str
    netns: str | None = None
    spf_check: bool = True
    #: Where the Maildirs live and the one this domain's mail goes to (relative, "/" ended).
    mail_base: Path | None = None
    mailbox: str = ""
    user: str = "nobody"
    master_pid: int | None = None

    @property
    def config_dir(self) -> Path:
        return self.workdir / "postfix"

    @property
    def base(self) -> Path:
        return self.mail_base or self.workdir / "mail"

    @property
    def maildir(self) -> Path:
        return self.base / (self.mailbox or f"{self.domain}/")

    def install(self) -> None:
        work = self.workdir
        for directory in (self.config_dir, work / "spool", work / "data", work / "policyd-spf", self.maildir):
            directory.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o755)
        postfix = pwd.getpwnam("postfix")
        os.chown(work / "data", postfix.pw_uid, postfix.pw_gid)
        owner = pwd.getpwnam(self.user)
        for directory in (self.base, self.maildir, *self.maildir.parents):
            if directory == self.base.parent:
                break
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        policy = "check_policy_service unix:private/policyd-spf, " if self.spf_check else ""
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
virtual_mailbox_base = {self.base}
virtual_mailbox_maps = inline:{{ @{self.domain}={self.maildir.relative_to(self.base)}/ }}
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
policyd-spf_time_limit = 3600
smtpd_helo_required = yes
smtpd_recipient_restrictions = reject_unauth_destination, {policy}permit
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

    def __enter__(self) -> MaildirMx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def OdooMx(workdir: Path, address: str, hostname: str, domain: str, netns: str | None = None) -> MaildirMx:  # noqa: N802
    """Odoo Online's MX for ``<db>.odoo.com``: judges SPF, keeps every message."""
    return MaildirMx(workdir, address, hostname, domain, netns)


def MailboxHost(workdir: Path, address: str, hostname: str, domain: str, maildirs: Path, mailbox: str, user: str,  # noqa: N802
                netns: str | None = None) -> MaildirMx:
    """The mailbox provider of an imap-mode stack: every address of ``domain`` into the
    Maildir ``maildirs/mailbox`` (Dovecot's, owned by its mail user)."""
    return MaildirMx(workdir, address, hostname, domain, netns, spf_check=False, mail_base=maildirs, mailbox=mailbox, user=user)
