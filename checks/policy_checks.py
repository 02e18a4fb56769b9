"""MTA-STS (RFC 8461) and SMTP TLS reporting (RFC 8460) records, when declared.

The TXT records are compared with the declaration (the MTA-STS ``id`` is derived from
the policy text, so an equal id means the published policy is the declared one). The
HTTPS policy file itself is served by the gateway and not fetched here.
"""

from __future__ import annotations

from modules import zonefile
from modules.model import Record

from checks.context import CheckContext
from checks.finding import Finding, errored, failed, passed, skipped
from checks.registry import check
from checks.resolver import DnsError


def _run(ctx: CheckContext, id: str, purpose: str, prefix: str, what: str) -> list[Finding]:
    if not ctx.declared:
        return _undeclared(ctx, id, prefix, what)
    declared: list[Record] = [r for r in ctx.planned if r.purpose == purpose]
    if not declared:
        return [skipped(id, f"{what} is not declared")]
    findings: list[Finding] = []
    for record in declared:
        try:
            texts = [t for t in ctx.resolver.txt(record.name).texts() if t.lower().startswith(prefix.lower())]
        except DnsError as err:
            findings.append(errored(id, f"{record.name}: DNS error: {err}"))
            continue
        if texts == [record.content]:
            findings.append(passed(id, f"{record.name}: {what} record as declared", found=texts[0]))
        elif not texts:
            findings.append(failed(id, f"{record.name}: no {what} record", expected=record.content, fix=zonefile.line(record)))
        else:
            findings.append(failed(id, f"{record.name}: {what} record differs from the declaration", expected=record.content, found=" | ".join(texts), fix=zonefile.line(record)))
    return findings


def _undeclared(ctx: CheckContext, id: str, prefix: str, what: str) -> list[Finding]:
    name = f"_mta-sts.{ctx.domain}" if prefix == "v=STSv1" else f"_smtp._tls.{ctx.domain}"
    try:
        texts = [t for t in ctx.resolver.txt(name).texts() if t.lower().startswith(prefix.lower())]
    except DnsError as err:
        return [errored(id, f"{name}: DNS error: {err}")]
    if not texts:
        return [skipped(id, f"{name}: no {what} record (optional)")]
    if len(texts) > 1:
        return [failed(id, f"{name}: {len(texts)} {what} records; senders ignore them all", found=" | ".join(texts))]
    return [passed(id, f"{name}: {what} record published", found=texts[0])]


@check("mta-sts.record", ref="RFC 8461 §3.1")
def mta_sts_record(ctx: CheckContext) -> list[Finding]:
    """``_mta-sts`` TXT is ``v=STSv1; id=...`` with the id of the declared policy."""
    return _run(ctx, "mta-sts.record", "mta-sts", "v=STSv1", "MTA-STS")


@check("tls-rpt.record", ref="RFC 8460 §3")
def tls_rpt_record(ctx: CheckContext) -> list[Finding]:
    """``_smtp._tls`` TXT is ``v=TLSRPTv1; rua=...`` as declared."""
    return _run(ctx, "tls-rpt.record", "tls-rpt", "v=TLSRPTv1", "TLS-RPT")
