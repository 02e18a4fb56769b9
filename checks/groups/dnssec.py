"""DNSSEC checks (RFC 4033-4035, RFC 5155): the mail domain's zone is signed — a DS at
the parent, a DNSKEY RRset signed by the key it names, RRSIGs over the mail records —
and every mail record validates from the trust anchor (``--trust-anchor FILE``, else the
system's root anchor).

Verdicts keep the four validation states apart: unsigned (a proven absence of DS) is
``warn``; bogus (a bad or expired signature, a DS matching no key, a missing proof) is
``fail``; a validation that could not complete (timeout, SERVFAIL, no anchor) is
``error``, never "broken". DANE (``mailstack.checks.groups.dane``) relies on the same
outcomes.
"""

from __future__ import annotations

import asyncio

import dns.name
import dns.rdatatype

from mailstack.checks.dns import dnssec
from mailstack.checks.dns.answer import DnsError
from mailstack.checks.dns.dnssec import Anchors, AnchorError, Outcome, Status
from mailstack.checks.engine.context import CheckContext, gather
from mailstack.checks.engine.finding import Finding, errored, failed, passed, skipped, warned
from mailstack.checks.engine.registry import check

#: Signatures that expire sooner than this mean the signer has stopped re-signing
#: (BIND's dnssec-policy refreshes 5 days before expiry by default).
EXPIRY_WARN_DAYS = 2.0
#: Record types a validator is asked about for an undeclared domain.
UNDECLARED = (("", "MX"), ("", "TXT"), ("_dmarc.", "TXT"))
#: The type a planned CNAME is read for (a DKIM selector's key, the inbound name's MX;
#: the MTA-STS policy host's address otherwise): the validation follows the alias to it.
ALIASED_TYPE = {"dkim": "TXT", "inbound": "MX"}
FIX_UNSIGNED = "sign the zone (BIND: dnssec-policy default; Cloudflare: DNS > Settings > DNSSEC) and publish its DS at the registrar"
FIX_BOGUS = "re-sign the zone and check the signer runs (expired or bad signatures), or replace the parent's DS with one of the zone's current KSK (dnssec-dsfromkey)"


def anchors(ctx: CheckContext) -> Anchors:
    """``--trust-anchor``'s anchors, else the system's root anchor (read once per run);
    AnchorError when neither is there."""
    if ctx.dnssec.anchors is not None:
        return ctx.dnssec.anchors
    return ctx.memo("dnssec-anchors", dnssec.load_anchors)


def outcome(ctx: CheckContext, name: str, rdtype: str) -> asyncio.Future[Outcome]:
    """The validation of ``name``/``rdtype`` (memoised per run; DANE asks the same)."""
    async def fetch() -> Outcome:
        try:
            trusted = anchors(ctx)
        except AnchorError as err:
            return Outcome(name, rdtype, Status.INDETERMINATE, str(err))
        return await dnssec.validate(ctx.dns, trusted, name, rdtype)
    return ctx.observe(f"dnssec:{name}:{rdtype}", fetch)


def mail_records(ctx: CheckContext) -> list[tuple[str, str]]:
    """(name, type) of every mail record: the planned ones, else the usual names. A
    planned CNAME is asked for the type read through it, so its target is validated too."""
    if ctx.planned:
        return list(dict.fromkeys((r.name, ALIASED_TYPE.get(r.purpose, "A") if r.type == "CNAME" else r.type) for r in ctx.planned))
    return [(f"{prefix}{domain}", rdtype) for domain in ctx.domains for prefix, rdtype in UNDECLARED]


def verdict(id: str, out: Outcome, what: str) -> Finding:
    """The finding for one outcome (shared by the group's checks); the outcome's notes
    (NSEC3 parameters, unsupported algorithms) go to the detail."""
    notes = "; ".join(out.notes)
    if out.status is Status.BOGUS:
        return failed(id, f"{what}: DNSSEC validation fails (bogus): {out.reason}", expected="a chain that validates", fix=FIX_BOGUS, detail=notes)
    if out.status is Status.INDETERMINATE:
        return errored(id, f"{what}: DNSSEC validation could not complete: {out.reason}", detail=notes)
    if out.status is Status.INSECURE:
        return warned(id, f"{what}: not signed: {out.reason}", fix=FIX_UNSIGNED, detail=notes)
    days = dnssec.expires_in_days(out)
    if days is not None and days < EXPIRY_WARN_DAYS:
        return warned(id, f"{what}: validates, but a signature it relies on expires in {days:.1f} days", fix="check that the signer re-signs the zone", detail=notes)
    return passed(id, f"{what}: validates ({out.zone})", detail=notes)


@check("dnssec.signed", ref="RFC 4035 §2, §5; RFC 4509")
async def signed(ctx: CheckContext) -> list[Finding]:
    """The mail domain's zone is signed: DS at the parent, DNSKEY, RRSIG over the MX RRset."""
    findings = []
    for domain, out in zip(ctx.domains, await gather(outcome(ctx, d, "MX") for d in ctx.domains)):
        if out.status is Status.INSECURE:
            island = await _has_dnskey(ctx, out.zone)
            why = f"{out.zone} has DNSKEY records but no DS at its parent: add the DS" if island else out.reason
            findings.append(warned("dnssec.signed", f"{domain}: the zone is not signed ({why})", fix=FIX_UNSIGNED, detail="; ".join(out.notes)))
        elif out.status is Status.SECURE:
            findings.append(passed("dnssec.signed", f"{domain}: zone {out.zone} is signed (DS at the parent, DNSKEY, RRSIG over MX)", detail="; ".join([out.reason, *out.notes])))
        else:
            findings.append(verdict("dnssec.signed", out, domain))
    return findings


async def _has_dnskey(ctx: CheckContext, zone: str) -> bool:
    try:
        response = await ctx.dns.message(zone, "DNSKEY")
    except DnsError:  # a hint only: the verdict is already decided
        return False
    return any(r.rdtype == dns.rdatatype.DNSKEY for r in response.answer)


@check("dnssec.valid", ref="RFC 4035 §5, RFC 5155 §8")
async def valid(ctx: CheckContext) -> list[Finding]:
    """Every mail record (planned, or MX/SPF/DMARC) validates from the trust anchor."""
    wanted = mail_records(ctx)
    if not wanted:
        return [skipped("dnssec.valid", "no mail record to validate")]
    domain_out = {d: o for d, o in zip(ctx.domains, await gather(outcome(ctx, d, "MX") for d in ctx.domains))}
    findings = []
    for (name, rdtype), out in zip(wanted, await gather(outcome(ctx, n, t) for n, t in wanted)):
        owner = next((d for d in sorted(ctx.domains, key=len, reverse=True) if dns.name.from_text(name).is_subdomain(dns.name.from_text(d))), None)
        if out.status is Status.INSECURE and owner is not None and domain_out[owner].status is Status.INSECURE:
            findings.append(skipped("dnssec.valid", f"{name} {rdtype}: the zone is not signed (dnssec.signed)"))
            continue
        findings.append(verdict("dnssec.valid", out, f"{name} {rdtype}"))
    return findings

