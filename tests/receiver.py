"""An independent receiving MTA for the deploy tests, built from Debian's packages only.

Postfix with ``postfix-policyd-spf-python`` (SPF, ``Received-SPF``), OpenDKIM in verify
mode and OpenDMARC as milters, in that order (OpenDMARC reads OpenDKIM's verdict), in a
network namespace of the caller's; every message is delivered into one Maildir. The
configuration and its pitfalls come from /work/research/receiver.md: policyd-spf skips
127.0.0.0/8 unless ``skip_addresses`` names something else (an empty value crashes it);
OpenDKIM's libunbound needs ``local-zone: "test." nodefault`` and the lab's name server;
OpenDMARC ignores 127.0.0.1 by default and must not validate SPF itself (libspf2 passes
all of 127/8); ``RemoveARAll`` strips forged results claiming this receiver.

The verdicts are what these programs wrote: ``verdict(raw)`` reads the
Authentication-Results fields above the receiver's own Received line with ``authres``,
and the Received-SPF field (not an Authentication-Results field) by its RFC 7208 §9.1
shape.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import authres
import authres.dmarc

from mailstack.gateway.render import RenderedFile
from mailstack.lab.binaries import binary
from mailstack.lab.postfix import LabError, OpenDkim, PostfixInstance, can_connect, wait_for
from mailstack.lab.process import stop_child

DKIM_PORT, DMARC_PORT = 8891, 8893
SERVICES = """\
{address}:25 inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
policyd-spf unix -      n       n       -       0       spawn
    user=policyd-spf argv=/usr/bin/policyd-spf {work}/policyd-spf.conf
"""


@dataclass
class Receiver:
    """The receiving MX ``hostname`` of ``domain`` at ``address`` inside ``netns``."""

    workdir: Path
    netns: str
    address: str
    hostname: str
    domain: str
    nameserver: str
    postfix: PostfixInstance | None = field(default=None, init=False)
    opendkim: OpenDkim | None = field(default=None, init=False)
    opendmarc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def maildir(self) -> Path:
        return self.workdir / "mail" / "inbox"

    def _main_cf(self) -> str:
        return f"""\
compatibility_level = 3.6
myhostname = {self.hostname}
mydomain = {self.domain}
myorigin = {self.domain}
mydestination =
inet_interfaces = {self.address}
inet_protocols = ipv4
mynetworks = {self.address}/32
smtp_bind_address = {self.address}
relay_domains =
default_transport = error:the test receiver sends nothing
biff = no
append_dot_mydomain = no
smtputf8_enable = no
smtpd_banner = $myhostname ESMTP
maillog_file = {self.workdir}/postfix.log
virtual_mailbox_domains = {self.domain}
virtual_mailbox_base = {self.workdir}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_transport = virtual
policyd-spf_time_limit = 3600
smtpd_helo_required = yes
smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service unix:private/policyd-spf, permit
smtpd_milters = inet:{self.address}:{DKIM_PORT}, inet:{self.address}:{DMARC_PORT}
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6
alias_maps =
alias_database =
"""

    def _write(self) -> None:
        work = self.workdir
        for directory in (work, work / "opendmarc"):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        (work / "policyd-spf.conf").write_text(
            "debugLevel = 1\nTestOnly = 1\nHELO_reject = False\nMail_From_reject = False\nPermError_reject = False\n"
            "TempError_Defer = False\n# not 127.0.0.0/8 (the default), never empty (crashes 3.0.4)\n"
            f"skip_addresses = 192.0.2.0/32\nHeader_Type = SPF\nHide_Receiver = No\nAuthserv_Id = {self.hostname}\n"
        )
        (work / "unbound.conf").write_text(
            'server:\n    local-zone: "test." nodefault\n    do-not-query-localhost: no\n'
            f'forward-zone:\n    name: "."\n    forward-addr: {self.nameserver}\n'
        )
        (work / "opendmarc" / "ignore.hosts").write_text("192.0.2.1\n")
        (work / "opendmarc" / "opendmarc.conf").write_text(
            f"Socket inet:{DMARC_PORT}@{self.address}\nPidFile {work}/opendmarc/opendmarc.pid\nUserID opendmarc\n"
            f"UMask 007\nSyslog false\nAuthservID {self.hostname}\nTrustedAuthservIDs {self.hostname}\n"
            f"IgnoreHosts {work}/opendmarc/ignore.hosts\nIgnoreAuthenticatedClients false\nRejectFailures false\n"
            "SPFIgnoreResults false\nSPFSelfValidate false\nRequiredHeaders false\nSoftwareHeader true\n"
            "FailureReports false\nPublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat\n"
        )
        user = pwd.getpwnam("opendmarc")
        os.chown(work / "opendmarc", user.pw_uid, user.pw_gid)  # it writes its PidFile as opendmarc
        mail = work / "mail"
        mail.mkdir(exist_ok=True)
        os.chown(mail, 65534, 65534)

    def start(self) -> None:
        self._write()
        work = self.workdir
        dkim_conf = (
            f"Mode v\nSocket inet:{DKIM_PORT}@{self.address}\nPidFile {work}/opendkim/opendkim.pid\nUserID opendkim\n"
            f"UMask 007\nSyslog no\nAuthservID {self.hostname}\nAlwaysAddARHeader yes\n"
            f"ResolverConfiguration {work}/unbound.conf\nRemoveARAll yes\nRemoveARFrom {self.hostname}\n"
        )
        self.opendkim = OpenDkim(work, {"opendkim/opendkim.conf": RenderedFile(dkim_conf)}, self.netns)
        self.opendkim.start()
        log = open(work / "opendmarc.log", "ab")
        self.opendmarc = subprocess.Popen(
            [binary("ip"), "netns", "exec", self.netns, binary("opendmarc"), "-f", "-c", f"{work}/opendmarc/opendmarc.conf"],
            stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        wait_for(lambda: self._opendmarc_ready(), 30, what="opendmarc")
        files = {"postfix/main.cf": RenderedFile(self._main_cf()),
                 "postfix/master.cf": RenderedFile(SERVICES.format(address=self.address, work=work))}
        self.postfix = PostfixInstance(work, files, self.netns)
        self.postfix.start()

    def _opendmarc_ready(self) -> bool:
        if self.opendmarc is not None and self.opendmarc.poll() is not None:
            raise LabError(f"opendmarc exited with {self.opendmarc.returncode}: see {self.workdir / 'opendmarc.log'}")
        return can_connect(self.address, DMARC_PORT, self.netns)

    def terminate(self) -> None:
        """Stop Postfix, then signal the milters (they take ~5 s to exit: see ``wait``)."""
        if self.postfix is not None:
            self.postfix.stop()
        for process in (self.opendmarc, self.opendkim.process if self.opendkim else None):
            if process is not None and process.poll() is None:
                process.terminate()

    def wait(self) -> None:
        stop_child(self.opendmarc, timeout=15)
        if self.opendkim is not None:
            self.opendkim.stop()

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
    """The receiver's own results for one delivered message."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    fields: list[tuple[str, str]] = []
    for name, value in message.items():
        value = re.sub(r"\r?\n[ \t]+", " ", str(value)).strip()
        if name.lower() == "received" and f"by {authserv_id}" in value:
            break  # below it: what arrived with the message (may be forged)
        fields.append((name.lower(), value))
    spf, spf_domain, dkim, dmarc, dmarc_from = "none", "", [], "none", ""
    context = authres.FeatureContext(authres.dmarc)
    for name, value in fields:
        if name == "received-spf":
            spf = value.split()[0].lower()
            found = re.search(r"envelope-from=\"?[^@;\s]*@([^;\s\"]+)", value)
            spf_domain = found.group(1).lower() if found else ""
        elif name == "authentication-results":
            header = context.parse(f"Authentication-Results: {value}")
            if header.authserv_id.lower() != authserv_id.lower():
                continue
            for result in header.results:
                props = {f"{p.type}.{p.name}": p.value for p in result.properties}
                if result.method == "dkim":
                    dkim.append((result.result, props.get("header.d", ""), props.get("header.s", "")))
                elif result.method == "dmarc":
                    dmarc, dmarc_from = result.result, props.get("header.from", "")
    return Verdict(spf, spf_domain, tuple(dkim), dmarc, dmarc_from)
