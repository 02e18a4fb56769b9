"""A private Dovecot (Debian ``dovecot-imapd``): the mailbox host of an imap-mode stack.

Odoo's incoming mail server fetches from it (the stand-in runs Odoo 17's fetchmail)
and the ``imap`` checks log in to it. Everything lives in one work directory: a
``dovecot.conf`` written here (no system configuration is read), the users' Maildirs
(``mail/<user>/Maildir``, where Postfix's ``virtual`` delivery agent — the lab MX —
or an IMAP ``APPEND`` puts mail), a ``passwd-file`` (0600), the certificate and the
log. IMAP with STARTTLS and IMAPS listen on one loopback address; plaintext logins
are refused without TLS. ``dovecot -F`` runs as a child, stopped by PID.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailstack.lab import files
from mailstack.lab.binaries import binary
from mailstack.lab.postfix import LabError, can_connect, wait_for
from mailstack.lab.process import stop_child
from mailstack.lab.tls import self_signed

#: The system user that owns the Maildirs (Postfix's virtual agent writes as it too).
MAIL_USER = "dovecot"


@dataclass
class Dovecot:
    """IMAP (143, STARTTLS) and IMAPS (993) for ``users`` ({login: password})."""

    workdir: Path
    address: str
    hostname: str
    users: Mapping[str, str]
    imap_port: int = 143
    imaps_port: int = 993
    netns: str | None = None
    #: The one Maildir every user opens (the lab's receiver delivers the stack's
    #: mailboxes there) and the system user owning it; None: ``mail/<user>/Maildir``
    #: here, owned by ``MAIL_USER``.
    mailbox: Path | None = None
    mail_owner: str = MAIL_USER
    #: (chain, key) PEM from the lab's CA; None: a self-signed certificate.
    certificate: tuple[bytes, bytes] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def cert_path(self) -> Path:
        """The server certificate (self-signed): the CA file clients verify with."""
        return self.workdir / "tls" / "imap.pem"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def maildir(self, user: str) -> Path:
        return self.mailbox if self.mailbox is not None else self.workdir / "mail" / user / "Maildir"

    def install(self) -> Path:
        """Write the configuration, users, certificate and Maildirs; returns dovecot.conf."""
        auth = pwd.getpwnam(MAIL_USER)  # Dovecot's auth process runs as it
        owner = pwd.getpwnam(self.mail_owner)
        for directory in ("run", "state", "tls", "mail"):
            (self.workdir / directory).mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        if not self.cert_path.exists() or self.certificate is not None:
            cert, key = self.certificate or self_signed([self.hostname], ca=True)
            self.cert_path.write_bytes(cert)
            key_path = self.workdir / "tls" / "imap.key"
            key_path.touch(mode=0o600)
            key_path.write_bytes(key)
        passwd = self.workdir / "users"
        passwd.touch(mode=0o600)
        passwd.write_text("".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items()))
        os.chown(passwd, auth.pw_uid, auth.pw_gid)
        for user in self.users:
            for sub in ("cur", "new", "tmp"):
                (self.maildir(user) / sub).mkdir(parents=True, exist_ok=True)
            home = self.workdir / "mail" / user
            home.mkdir(exist_ok=True)
            for path in (home, *self.maildir(user).rglob("*"), self.maildir(user)):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chown(self.workdir / "mail", owner.pw_uid, owner.pw_gid)
        location = f"maildir:{self.mailbox}" if self.mailbox is not None else f"maildir:{self.workdir}/mail/%u/Maildir"
        conf = self.workdir / "dovecot.conf"
        conf.write_text(f"""# Rendered by mailstack.lab.dovecot: a private Dovecot for the lab.
base_dir = {self.workdir}/run
state_dir = {self.workdir}/state
log_path = {self.workdir}/log/dovecot.log
protocols = imap
listen = {self.address}
ssl = yes
ssl_cert = <{self.cert_path}
ssl_key = <{self.workdir}/tls/imap.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = {location}
mail_uid = {owner.pw_uid}
mail_gid = {owner.pw_gid}
first_valid_uid = {owner.pw_uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={self.workdir}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
""")
        return conf

    def start(self) -> None:
        conf = self.install()
        command = [binary("dovecot"), "-F", "-c", str(conf)]
        if self.netns:
            command = [binary("ip"), "netns", "exec", self.netns, *command]
        files.log_file(self.workdir / "log", "dovecot.log")  # 0600 in a 0700 directory: the master (root) writes it
        log = open(files.log_file(self.workdir / "log", "dovecot.stderr"), "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        log.close()

        def ready() -> bool:
            if self.process and self.process.poll() is not None:
                raise LabError(f"dovecot exited with {self.process.returncode}: see {self.workdir / 'log' / 'dovecot.log'}")
            return can_connect(self.address, self.imaps_port, self.netns) and can_connect(self.address, self.imap_port, self.netns)

        wait_for(ready, 30, what=f"dovecot on {self.address}")

    def stop(self) -> None:
        stop_child(self.process, timeout=15)
        self.process = None

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
