"""DANE and TLS checks of every MX host (RFC 7672, RFC 6698, RFC 8996, RFC 5280): its
STARTTLS certificate matches its ``_25._tcp`` TLSA records, DANE is claimed only on
a signed zone, the chain verifies with the MX name (the system trust store or
``--ca-file``), the certificate is not about to expire, and TLS 1.0/1.1 are refused.

TLSA records count only when they validate (``mailstack.checks.groups.dnssec``'s
outcomes): a bogus TLSA RRset is a failure — a DANE sender defers the mail, it does
not fall back to plain TLS (RFC 7672 §2.2) — and one that cannot be validated is
an error.
"""

from __future__ import annotations

import asyncio
import datetime

from cryptography import x509

from mailstack.checks.dns.dnssec import Outcome, Status
from mailstack.checks.engine.context import CheckContext, gather
from mailstack.checks.engine.finding import Finding, errored, failed, passed, skipped, warned
from mailstack.checks.engine.registry import check
from mailstack.checks.groups import dnssec as dnssec_checks
from mailstack.checks.groups import mx as mx_checks
from mailstack.checks.groups.smtp import recipient_domain
from mailstack.checks.probes.tls import TlsObservation, probe
from mailstack.core.model import InboundMode
from mailstack.rules import dane

#: A certificate expiring sooner is a warning (renewal has failed somewhere).
EXPIRY_WARN_DAYS = 14


async def observations(ctx: CheckContext) -> list[TlsObservation]:
    """One STARTTLS observation per address of each MX host (memoised per run)."""
    async def compute() -> list[TlsObservation]:
        inbound = list(dict.fromkeys(recipient_domain(ctx, d) for d in ctx.domains))
        planned: list[TlsObservation | tuple[str, str]] = [
            TlsObservation(t.host, "", ctx.smtp.port, error=t.error) if isinstance(t, mx_checks.Unreachable) else t
            for t in await mx_checks.probe_targets(ctx, inbound)
        ]
        probed = iter(await gather(
            ctx.blocking(probe, p[0], p[1], ctx.smtp, ctx.tls.cafile) for p in planned if isinstance(p, tuple)
        ))
        return [next(probed) if isinstance(p, tuple) else p for p in planned]
    return await ctx.observe("tls", compute)


async def _each(ctx: CheckContext, id: str) -> tuple[list[TlsObservation], list[Finding]]:
    if ctx.stack is not None and ctx.stack.inbound.mode is InboundMode.NONE:
        return [], [skipped(id, "the domain receives no mail (null MX)")]
    obs = await observations(ctx)
    if not obs:
        return [], [skipped(id, f"{recipient_domain(ctx)} has no MX host to connect to")]
    return [o for o in obs if o.error is None], [errored(id, f"{o.where}: {o.error}") for o in obs if o.error]


def _tlsa(ctx: CheckContext, host: str) -> asyncio.Future[Outcome]:
    return dnssec_checks.outcome(ctx, dane.tlsa_name(host), "TLSA")


async def addresses(ctx: CheckContext, host: str, rdtype: str) -> Outcome:
    """The validation of ``host``'s address records of ``rdtype``, through the CNAMEs
    that lead to them (RFC 7672 §2.2.2; the validator follows them, the weakest link
    deciding). A sender uses the host's TLSA only when this is secure."""
    return await dnssec_checks.outcome(ctx, host, rdtype)


def declared_hosts(ctx: CheckContext) -> set[str]:
    """MX hosts the plan publishes TLSA records for."""
    return {r.name.split(".", 2)[2] for r in ctx.planned if r.type == "TLSA"}


def matches(o: TlsObservation, records: tuple[object, ...]) -> tuple[list[str], list[str]]:
    """(matching, non-matching with the reason) TLSA records for the presented chain
    (``mailstack.rules.dane.mismatch``: DANE-EE against the leaf, DANE-TA against the
    chain up to its anchor and the MX name)."""
    chain = [x509.load_der_x509_certificate(der) for der in o.chain or (o.leaf or b"",)]
    good: list[str] = []
    bad: list[str] = []
    for rdata in records:
        text = rdata.to_text()  # type: ignore[attr-defined]
        try:
            record = dane.parse(text)
        except dane.DaneError as err:
            bad.append(f"{text[:40]}... unusable: {err}")
            continue
        reason = dane.mismatch(chain, o.host, record)
        if reason is None:
            good.append(text)
        else:
            bad.append(f"{text if len(text) <= 80 else text[:77] + '...'} ({reason})")
    return good, bad


@check("dane.tlsa", ref="RFC 7672 §2.2, §3.1; RFC 6698 §2.1")
async def tlsa(ctx: CheckContext) -> list[Finding]:
    """Every MX host's STARTTLS certificate matches its validated TLSA records."""
    live, findings = await _each(ctx, "dane.tlsa")
    declared = declared_hosts(ctx)
    secured = await gather(addresses(ctx, o.host, "AAAA" if ":" in o.address else "A") for o in live)
    for o, out, address in zip(live, await gather(_tlsa(ctx, o.host) for o in live), secured):
        where = f"{o.where} {dane.tlsa_name(o.host)}"
        if out.status is Status.SECURE and out.records and address.status is not Status.SECURE:
            # RFC 7672 §2.2.2: TLSA is used only when the host's address records are secure
            findings.append(dnssec_checks.verdict("dane.tlsa", address, f"{where}: address records of {o.host}")
                            if address.status is not Status.INSECURE else
                            skipped("dane.tlsa", f"{where}: the address records of {o.host} are not signed, so senders do not use its TLSA (RFC 7672 §2.2.2): {address.reason}"))
        elif out.status is Status.BOGUS:
            findings.append(failed("dane.tlsa", f"{where}: the TLSA RRset is bogus; DANE senders defer all mail: {out.reason}", fix=dnssec_checks.FIX_BOGUS))
        elif out.status is Status.INDETERMINATE:
            findings.append(errored("dane.tlsa", f"{where}: the TLSA lookup could not be validated: {out.reason}"))
        elif out.status is Status.INSECURE:
            findings.append(skipped("dane.tlsa", f"{where}: the zone is not signed; TLSA is ignored (dane.signed)"))
        elif not out.records:
            if o.host in declared:
                findings.append(failed("dane.tlsa", f"{where}: no TLSA record, but the plan publishes one", fix="`pulumi up` (or `mailstack records`) to publish the planned TLSA"))
            else:
                findings.append(skipped("dane.tlsa", f"{where}: no TLSA record (DANE not used; securely denied)"))
        else:
            good, bad = matches(o, out.records)
            if good:
                findings.append(passed("dane.tlsa", f"{where}: certificate matches {good[0]}", detail="; ".join(f"no match: {b}" for b in bad)))
            else:
                actual = dane.association(x509.load_der_x509_certificate(o.leaf or b""), dane.SPKI, dane.SHA256)
                findings.append(failed("dane.tlsa", f"{where}: the certificate matches none of {len(bad)} TLSA record(s); DANE senders defer all mail",
                                       detail="; ".join(bad), expected=f"3 1 1 {actual}", found=", ".join(bad),
                                       fix=f"publish `{dane.tlsa_name(o.host)} TLSA 3 1 1 {actual}` (gateway.tls.dane.digest: {actual}), or put the certificate whose key the record names back"))
    return findings


@check("dane.signed", ref="RFC 7672 §2.2, RFC 6698 §4.1")
async def signed(ctx: CheckContext) -> list[Finding]:
    """DANE is only claimed (TLSA published) where DNSSEC validates it."""
    live, findings = await _each(ctx, "dane.signed")
    hosts = list(dict.fromkeys(o.host for o in live))
    families = {o.host: "AAAA" if ":" in o.address else "A" for o in live}
    secured = await gather(addresses(ctx, h, families[h]) for h in hosts)
    for host, out, address in zip(hosts, await gather(_tlsa(ctx, h) for h in hosts), secured):
        name = dane.tlsa_name(host)
        if out.status is Status.SECURE and out.records and address.status is Status.INSECURE:
            findings.append(failed("dane.signed", f"{name}: TLSA validated in {out.zone}, but the address records of {host} are not signed: senders ignore the TLSA (RFC 7672 §2.2.2), DANE does not protect {host}",
                                   detail=address.reason, fix=f"sign the zone that holds {host}'s address records (and its DS at the parent), or make {host} a name of a signed zone rather than an alias into an unsigned one"))
        elif out.status is Status.INSECURE and out.records:
            findings.append(failed("dane.signed", f"{name}: TLSA published in the unsigned zone {out.zone}: senders ignore it, DANE does not protect {host}", fix=dnssec_checks.FIX_UNSIGNED))
        elif out.status is Status.SECURE and out.records:
            findings.append(passed("dane.signed", f"{name}: TLSA validated in the signed zone {out.zone}"))
        elif out.status in (Status.BOGUS, Status.INDETERMINATE):
            findings.append(dnssec_checks.verdict("dane.signed", out, name))
        else:
            findings.append(skipped("dane.signed", f"{name}: no TLSA record (DANE not claimed)"))
    return findings


@check("tls.chain", ref="RFC 5280 §6, RFC 6125 §6, RFC 8461 §4.2")
async def chain(ctx: CheckContext) -> list[Finding]:
    """Every MX certificate chain verifies with the MX name (trust store or --ca-file)."""
    live, findings = await _each(ctx, "tls.chain")
    store = ctx.tls.cafile or "the system trust store"
    for o in live:
        if o.pkix_error is None:
            findings.append(passed("tls.chain", f"{o.where}: chain verifies against {store} for {o.host}"))
        else:
            findings.append(failed("tls.chain", f"{o.where}: chain does not verify against {store}: {o.pkix_error}", fix="serve the full chain of a CA-issued certificate naming the MX host (Postfix: smtpd_tls_chain_files); MTA-STS senders require it"))
    return findings


@check("tls.expiry", ref="RFC 5280 §4.1.2.5")
async def expiry(ctx: CheckContext) -> list[Finding]:
    """No MX certificate is expired or expires within 14 days."""
    live, findings = await _each(ctx, "tls.expiry")
    now = datetime.datetime.now(datetime.timezone.utc)
    for o in live:
        cert = x509.load_der_x509_certificate(o.leaf or b"")
        days = (cert.not_valid_after_utc - now).total_seconds() / 86400
        when = cert.not_valid_after_utc.strftime("%Y-%m-%d")
        if days < 0:
            findings.append(failed("tls.expiry", f"{o.where}: certificate expired on {when}", fix="renew the certificate (certbot renew --reuse-key keeps the DANE digest)"))
        elif days < EXPIRY_WARN_DAYS:
            findings.append(warned("tls.expiry", f"{o.where}: certificate expires in {days:.1f} days ({when})", fix="renew the certificate now (certbot renew --reuse-key keeps the DANE digest)"))
        else:
            findings.append(passed("tls.expiry", f"{o.where}: certificate valid for {days:.0f} more days ({when})"))
    return findings


@check("tls.versions", ref="RFC 8996, RFC 7525 §3.1.1")
async def versions(ctx: CheckContext) -> list[Finding]:
    """Every MX refuses TLS 1.0 and 1.1."""
    live, findings = await _each(ctx, "tls.versions")
    for o in live:
        accepted = {v: r for v, r in o.legacy.items() if r.startswith("accepted")}
        untested = {v: r for v, r in o.legacy.items() if r.startswith("untested")}
        detail = "; ".join(f"{v}: {r}" for v, r in o.legacy.items())
        if accepted:
            findings.append(failed("tls.versions", f"{o.where}: accepts {', '.join(accepted)} (negotiated {o.version} by default)", detail=detail, fix="Postfix: smtpd_tls_protocols = >=TLSv1.2 and smtpd_tls_mandatory_protocols = >=TLSv1.2"))
        elif untested:
            findings.append(errored("tls.versions", f"{o.where}: {', '.join(untested)} could not be tried from here", detail=detail))
        else:
            findings.append(passed("tls.versions", f"{o.where}: TLS 1.0 and 1.1 refused ({o.version} negotiated)", detail=detail))
    return findings

