"""What the receiving server concluded about a delivered message, and a second opinion.

The e2e probes are judged by a receiver nobody here wrote (the lab's: Postfix with
postfix-policyd-spf-python, OpenDKIM and OpenDMARC): ``receiver_verdict`` reads the
headers it added — ``Authentication-Results`` parsed with ``authres`` (dkim=, dmarc=,
spf= when a receiver writes it there), ``Received-SPF`` (RFC 7208 §9.1, which authres
does not parse: a small field of ``result (comment) key=value; ...``). Only fields
above the receiver's own ``Received: ... by <authserv-id>`` and with its authserv-id
count: anything below arrived with the message and may be forged.

``second_opinion`` decides the same three results with dkimpy, pyspf
(``check_host``) and ``mailstack.rules.dmarc`` through the run's resolver, from the
envelope the receiver recorded. The checks show both, and a disagreement between
them fails the check: one of the two is wrong, and the lab must not hide which.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import re
from dataclasses import dataclass, field

import authres
import authres.dmarc
import dkim as dkimpy

from mailstack.checks.dns.resolver import DnsError, Resolver
from mailstack.checks.probes.dkim_dns import dnsfunc
from mailstack.checks.probes.spf_pyspf import check_host
from mailstack.rules import dmarc

_CONTEXT = authres.FeatureContext(authres.dmarc)
_FOLD = re.compile(r"\r?\n[ \t]+")
_RECEIVED_SPF = re.compile(r"\s*([A-Za-z]+)\s*(?:\(([^()]*)\))?\s*(.*)$", re.S)
_RECEIVED_FROM = re.compile(r"from\s+(\S+)\s+\(([^()\[]*)\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]\)")


def _unfold(value: str) -> str:
    return _FOLD.sub(" ", value).strip()


@dataclass(frozen=True, slots=True)
class DkimResult:
    """One signature's result: pass | fail | neutral | none | permerror | temperror."""

    result: str
    domain: str | None = None
    selector: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """SPF, DKIM and DMARC results for one message, from one judge."""

    judge: str
    spf: str | None = None
    spf_domain: str | None = None
    dkim: tuple[DkimResult, ...] = ()
    dmarc: str | None = None
    dmarc_from: str | None = None
    #: Fields that did not parse (kept verbatim) or notes on how the results were found.
    notes: tuple[str, ...] = field(default=())

    def dkim_passes(self, domain: str) -> bool:
        """True when a signature with exactly d=``domain`` verified."""
        return any(d.result == "pass" and (d.domain or "").lower() == domain.lower() for d in self.dkim)

    @property
    def dkim_summary(self) -> str:
        if not self.dkim:
            return "none"
        return ", ".join(f"{d.result}" + (f" (d={d.domain} s={d.selector})" if d.domain else "") for d in self.dkim)

    def summary(self) -> str:
        spf = f"{self.spf}" + (f" ({self.spf_domain})" if self.spf_domain else "")
        dmarc_text = f"{self.dmarc}" + (f" (From {self.dmarc_from})" if self.dmarc_from else "")
        return f"spf={spf} dkim={self.dkim_summary} dmarc={dmarc_text}"


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the receiver saw in the SMTP session (from the headers it added)."""

    client_ip: str | None
    helo: str | None
    mail_from: str | None  # "" for the null sender, None when unknown


def _headers_above_receiver(raw: bytes, authserv_id: str) -> tuple[list[tuple[str, str]], str | None]:
    """The header fields the receiver added (above its own Received), and that Received."""
    message = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    ours: list[tuple[str, str]] = []
    for name, value in message.items():
        text = _unfold(str(value))
        if name.lower() == "received" and re.search(rf"\bby\s+{re.escape(authserv_id)}\b", text, re.I):
            return ours, text
        ours.append((name, text))
    return ours, None


def parse_received_spf(value: str) -> dict[str, str]:
    """``Received-SPF: Pass (mailfrom) identity=mailfrom; client-ip=...; ...``."""
    match = _RECEIVED_SPF.match(value)
    if not match:
        return {}
    result, comment, rest = match.groups()
    fields = {k.strip().lower(): v.strip().strip('"') for k, _, v in (item.partition("=") for item in rest.split(";")) if v}
    return {"result": result.lower(), "comment": comment or "", **fields}


def receiver_verdict(raw: bytes, authserv_id: str) -> Verdict:
    """The verdicts the receiver ``authserv_id`` wrote into the delivered ``raw``."""
    fields, received = _headers_above_receiver(raw, authserv_id)
    notes: list[str] = [] if received else [f"no Received line by {authserv_id}: the message did not pass that receiver"]
    spf_result = spf_domain = dmarc_result = dmarc_from = None
    signatures: list[DkimResult] = []
    for name, value in fields:
        lower = name.lower()
        if lower == "received-spf" and spf_result is None:
            parsed = parse_received_spf(value)
            spf_result = parsed.get("result")
            identity = parsed.get("identity", "mailfrom")
            sender = parsed.get("envelope-from", "")
            spf_domain = sender.rsplit("@", 1)[-1].lower() if identity == "mailfrom" and "@" in sender else parsed.get("helo")
        elif lower == "authentication-results":
            try:
                header = _CONTEXT.parse(f"{name}: {value}")
            except authres.AuthResError as err:
                notes.append(f"unparsable Authentication-Results ({err}): {value[:200]}")
                continue
            if str(header.authserv_id).lower() != authserv_id.lower():
                continue
            for result in header.results:
                props = {f"{p.type}.{p.name}": str(p.value) for p in result.properties}
                if result.method == "dkim":
                    signatures.append(DkimResult(str(result.result), props.get("header.d"), props.get("header.s"), str(result.reason or "")))
                elif result.method == "dmarc" and dmarc_result is None:
                    dmarc_result, dmarc_from = str(result.result), props.get("header.from")
                elif result.method == "spf" and spf_result is None:
                    spf_result, spf_domain = str(result.result), props.get("smtp.mailfrom", "").rsplit("@", 1)[-1] or None
    return Verdict(f"receiver {authserv_id}", spf_result, spf_domain, tuple(signatures), dmarc_result, dmarc_from, tuple(notes))


def envelope(raw: bytes, authserv_id: str) -> Envelope:
    """Client address, HELO and MAIL FROM as the receiver recorded them: its
    Received-SPF key/values, else its own Received line and Return-Path."""
    fields, received = _headers_above_receiver(raw, authserv_id)
    spf_fields = next((parse_received_spf(v) for n, v in fields if n.lower() == "received-spf"), {})
    match = _RECEIVED_FROM.search(received or "")
    return_path = next((v for n, v in fields if n.lower() == "return-path"), None)
    mail_from = email.utils.parseaddr(return_path)[1] if return_path is not None else spf_fields.get("envelope-from")
    return Envelope(
        spf_fields.get("client-ip") or (match.group(3) if match else None),
        spf_fields.get("helo") or (match.group(1) if match else None),
        mail_from,
    )


def _from_domain(raw: bytes) -> str | None:
    message = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    addresses = email.utils.getaddresses([str(v) for v in message.get_all("From") or []])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        return None
    return addresses[0][1].rsplit("@", 1)[1].lower()


def _discover(resolver: Resolver, domain: str) -> dmarc.Discovery:
    """The DNS tree walk of RFC 9989 §4.10 for ``domain`` through ``resolver`` (cached
    per run), decided by ``mailstack.rules.dmarc.discover``; DnsError propagates."""
    found: dict[str, str | None] = {}
    for name in dmarc.walk(domain):
        if dmarc.decided(domain, found):
            break
        found[name] = dmarc.single_record(resolver.txt(dmarc.record_name(name)).texts())
    return dmarc.discover(domain, found)


def _dkim(raw: bytes, resolver: Resolver) -> tuple[DkimResult, ...]:
    crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    checker = dkimpy.DKIM(crlf, minkey=1024)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    found = []
    for index in range(count):
        errors: list[DnsError] = []
        try:
            tags = checker.verify_headerprep(index)
            tag_map = tags[0] if tags else {}
            ok = checker.verify(index, dnsfunc=dnsfunc(resolver, errors))
            reason = ""
        except dkimpy.DKIMException as err:
            tag_map, ok, reason = {}, False, str(err)
        if errors:
            found.append(DkimResult("temperror", None, None, str(errors[0])))
            continue
        domain = tag_map.get(b"d", b"").decode("ascii", "replace").lower() or None
        selector = tag_map.get(b"s", b"").decode("ascii", "replace") or None
        found.append(DkimResult("pass" if ok else "fail", domain, selector, reason))
    return tuple(found)


def second_opinion(raw: bytes, seen: Envelope, resolver: Resolver) -> Verdict:
    """SPF (pyspf), DKIM (dkimpy) and DMARC (``mailstack.rules.dmarc``) for ``raw``
    as received from ``seen``; DNS through ``resolver`` (DnsError propagates)."""
    spf_result = spf_domain = None
    notes = []
    if seen.client_ip and seen.mail_from is not None:
        identity = seen.mail_from.rsplit("@", 1)[1].lower() if "@" in seen.mail_from else (seen.helo or "")
        spf_result, _ = check_host(resolver, seen.client_ip, identity, seen.mail_from or f"postmaster@{identity}")
        spf_domain = identity
    else:
        notes.append("the receiver recorded no client address or MAIL FROM: SPF not evaluated")
    signatures = _dkim(raw, resolver)
    from_domain = _from_domain(raw)
    if from_domain is None:
        return Verdict("second opinion", spf_result, spf_domain, signatures, "fail", None, ("no single From address",))
    result = dmarc.evaluate(
        from_domain, _discover(resolver, from_domain).record, spf_result=spf_result or "none", spf_domain=spf_domain or "",
        dkim_domains=[d.domain for d in signatures if d.result == "pass" and d.domain],
        org=lambda name: _discover(resolver, name).organizational_domain,  # the tree walk, not the PSL
    )
    return Verdict("second opinion (pyspf, dkimpy, mailstack.rules.dmarc)", spf_result, spf_domain, signatures,
                   result.result, from_domain, (*notes, result.reason))


def disagreements(first: Verdict, second: Verdict) -> list[str]:
    """Where two judges of one message differ (SPF, each signing domain, DMARC)."""
    found = []
    if (first.spf or "none") != (second.spf or "none"):
        found.append(f"SPF: {first.judge} {first.spf}, {second.judge} {second.spf}")
    domains = {d.domain.lower() for d in (*first.dkim, *second.dkim) if d.domain}
    for domain in sorted(domains):
        if first.dkim_passes(domain) != second.dkim_passes(domain):
            found.append(f"DKIM d={domain}: {first.judge} {'pass' if first.dkim_passes(domain) else 'no pass'}, "
                         f"{second.judge} {'pass' if second.dkim_passes(domain) else 'no pass'}")
    if (first.dmarc or "none") != (second.dmarc or "none"):
        found.append(f"DMARC: {first.judge} {first.dmarc}, {second.judge} {second.dmarc}")
    return found
