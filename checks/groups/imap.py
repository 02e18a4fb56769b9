"""The ``imap`` group: the mailbox Odoo fetches (``inbound.mode: imap``, ``inbound.imap``).

One read-only session per run (``mailstack.checks.probes.imap``) to the declared host
and port as the declared user: ``imap.tls`` (TLS version, certificate valid for the
host name — Odoo 17's fetchmail does not verify it, imaplib's default, so a bad
certificate would go unnoticed by Odoo), ``imap.login`` and ``imap.mailbox`` (the
folder exists; how many messages and how many unseen — what Odoo's next fetch takes).
The password comes from ``MAILSTACK_IMAP_PASSWORD`` or ``MAILSTACK_IMAP_PASSWORD_FILE``.
"""

from __future__ import annotations

import os

from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding, errored, failed, passed, skipped, warned
from mailstack.checks.engine.registry import check
from mailstack.checks.probes.imap import ImapObservation, password_from_env, probe
from mailstack.core import names
from mailstack.core.model import InboundMode

REF = "RFC 9051 (IMAP4rev2) §6.2.1, RFC 8314 §3"


def _observe(ctx: CheckContext, check_id: str) -> tuple[ImapObservation | None, Finding | None]:
    stack = ctx.stack
    if stack is None:
        return None, skipped(check_id, "needs a declaration (--stack/--stack-file)")
    if stack.inbound.mode is not InboundMode.IMAP or stack.inbound.imap is None:
        return None, skipped(check_id, "no IMAP mailbox is declared (inbound.mode imap with inbound.imap)")
    mailbox = stack.inbound.imap
    try:
        password = password_from_env()
    except ValueError as err:
        return None, errored(check_id, str(err), fix="point MAILSTACK_IMAP_PASSWORD_FILE at a file this user can read")

    def run() -> ImapObservation:
        address = mailbox.host if names.is_ip(mailbox.host) else next(iter(ctx.resolver.addresses(mailbox.host)), "")
        if not address:
            return ImapObservation(error=f"{mailbox.host} has no address", stage="connect")
        return probe(mailbox, address, password, cafile=os.environ.get("MAILSTACK_IMAP_CAFILE"), timeout=ctx.smtp.timeout)

    return ctx.memo("imap:observation", run), None


@check("imap.tls", ref=REF)
def tls(ctx: CheckContext) -> list[Finding]:
    """The IMAP server speaks TLS (implicit or STARTTLS) with a certificate valid for its name."""
    observed, stop = _observe(ctx, "imap.tls")
    if stop:
        return [stop]
    assert observed and ctx.stack and ctx.stack.inbound.imap
    mailbox = ctx.stack.inbound.imap
    where = f"{mailbox.host}:{mailbox.port} ({mailbox.security})"
    if observed.stage == "connect":
        return [errored("imap.tls", f"{where}: {observed.error}")]
    if observed.stage == "tls":
        return [failed("imap.tls", f"{where}: {observed.tls_error}; Odoo 17 does not verify IMAP certificates, so it would connect anyway",
                       fix="install a certificate for the host name (e.g. Let's Encrypt)")]
    summary = f"{where} at {observed.address}: {observed.tls_version}, {observed.cipher}, certificate valid for {mailbox.host}"
    if mailbox.security == "starttls":
        return [warned("imap.tls", f"{summary}; Odoo 17's incoming server has no STARTTLS: it would log in unencrypted on this port",
                       fix="let Odoo use port 993 (security: ssl)")]
    return [passed("imap.tls", summary)]


@check("imap.login", ref="RFC 9051 §6.2.3")
def login(ctx: CheckContext) -> list[Finding]:
    """The declared user logs in with the declared password."""
    observed, stop = _observe(ctx, "imap.login")
    if stop:
        return [stop]
    assert observed and ctx.stack and ctx.stack.inbound.imap
    user = ctx.stack.inbound.imap.user
    if observed.stage in ("connect", "tls"):
        return [errored("imap.login", f"not tried: the connection failed ({observed.error or observed.tls_error})")]
    if observed.stage == "login":
        finding = skipped if observed.login_error.startswith("no password") else failed
        return [finding("imap.login", f"{user}: {observed.login_error}")]
    return [passed("imap.login", f"{user} logged in")]


@check("imap.mailbox", ref="RFC 9051 §6.3.3")
def mailbox(ctx: CheckContext) -> list[Finding]:
    """The folder exists; its messages and the unseen ones Odoo's next fetch takes."""
    observed, stop = _observe(ctx, "imap.mailbox")
    if stop:
        return [stop]
    assert observed and ctx.stack and ctx.stack.inbound.imap
    folder = ctx.stack.inbound.imap.folder
    if observed.stage in ("connect", "tls", "login"):
        return [skipped("imap.mailbox", "not examined: no session")]
    if observed.stage == "mailbox":
        return [failed("imap.mailbox", f"cannot open {observed.mailbox_error}")]
    if observed.stage == "session":
        return [errored("imap.mailbox", observed.error)]
    return [passed("imap.mailbox", f"{folder}: {observed.messages} message(s), {observed.unseen} unseen (Odoo fetches the unseen ones)")]
