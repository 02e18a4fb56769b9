"""Odoo-aware hints for a domain (mostly for ``--domain`` mode, where nothing is
declared): Odoo's documented SPF include and DKIM CNAME belong together, and a domain
that routes replies to Odoo needs them."""

from __future__ import annotations

import asyncio

from mailstack.checks.dns.answer import DnsError
from mailstack.checks.engine.context import CheckContext
from mailstack.checks.engine.finding import Finding, errored, passed, skipped, warned
from mailstack.checks.engine.registry import check
from mailstack.rules import dkim, senders, spf


@check("odoo.sending", ref="Odoo 17 docs: email / custom domain (SPF include:_spf.odoo.com, DKIM odoo._domainkey)")
async def odoo_sending(ctx: CheckContext) -> list[Finding]:
    """Sending through Odoo's servers needs both include:_spf.odoo.com and the odoo DKIM CNAME."""
    if ctx.stack is not None and not ctx.stack.odoo.saas:
        return [skipped("odoo.sending", "Odoo runs on premise; it sends through the declared servers")]
    domain = ctx.domain
    key_name = dkim.record_name(senders.ODOO_DKIM_SELECTOR, domain)
    try:
        spf_answer, key = await asyncio.gather(ctx.dns.txt(domain), ctx.dns.query(key_name, "TXT"))
        spf_texts = [t for t in spf_answer.texts() if spf.is_spf(t)]
    except DnsError as err:
        return [errored("odoo.sending", f"DNS error: {err}")]
    include = any(senders.ODOO_SPF_INCLUDE in t.split() for t in spf_texts)
    cname = senders.ODOO_DKIM_TARGET in key.cnames
    if include and cname:
        return [passed("odoo.sending", f"{domain}: SPF includes _spf.odoo.com and {key_name} points at Odoo's key")]
    if not include and not cname:
        if ctx.stack is None:
            return [skipped("odoo.sending", f"{domain}: no sign of sending through Odoo's servers")]
        return [warned("odoo.sending", f"{domain}: neither Odoo's SPF include nor its DKIM CNAME is published", fix=f'{domain}. IN TXT "v=spf1 {senders.ODOO_SPF_INCLUDE} ~all"; {key_name}. IN CNAME {senders.ODOO_DKIM_TARGET}.')]
    if include:
        return [warned("odoo.sending", f"{domain}: SPF includes Odoo but {key_name} is not a CNAME to {senders.ODOO_DKIM_TARGET}; Odoo's mail will not align DMARC (its Return-Path is on odoo.com)", fix=f"{key_name}. IN CNAME {senders.ODOO_DKIM_TARGET}.")]
    return [warned("odoo.sending", f"{domain}: {key_name} points at Odoo but SPF lacks {senders.ODOO_SPF_INCLUDE}", fix=f"add {senders.ODOO_SPF_INCLUDE} to the one SPF record of {domain}")]
