"""What a receiving mail server concludes about one message: SPF, DKIM and DMARC.

The lab's recipient MTA runs this on every message it accepts, the way a big mailbox
provider would: SPF with pyspf for the connecting address, MAIL FROM and HELO; every
DKIM signature with dkimpy, and again with OpenDKIM's own verifier
(``opendkim-testmsg``, a second, independent implementation); DMARC from the policy
record of the From domain with the alignment rule of ``mailstack.rules.dmarc``. DNS goes to the
system resolver, which in the lab's network namespace is the lab's BIND.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

import dkim
import dns.exception
import dns.resolver
import spf

from mailstack.core import txt
from mailstack.lab import binaries
from mailstack.rules import dmarc

OPENDKIM_TESTMSG = "opendkim-testmsg"


@dataclass(frozen=True, slots=True)
class DkimSignature:
    """One DKIM-Signature and whether it verified (dkimpy)."""

    domain: str
    selector: str
    result: str  # pass | fail
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Every authentication result for one received message."""

    spf: str
    spf_domain: str
    spf_reason: str
    dkim: tuple[DkimSignature, ...]
    opendkim: str  # pass | fail | none (no signature) | unavailable
    opendkim_reason: str
    dmarc: str
    dmarc_policy: str | None
    dmarc_reason: str
    from_domain: str
    dkim_domains: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["dkim"] = [asdict(s) for s in self.dkim]
        data["dkim_domains"] = list(self.dkim_domains)
        return data


def verify(raw: bytes, *, client_ip: str, mail_from: str, helo: str) -> Verdict:
    """Authenticate one message as received from ``client_ip``."""
    spf_result, spf_reason = _spf(client_ip, mail_from, helo)
    spf_domain = mail_from.rsplit("@", 1)[1].lower() if "@" in mail_from else helo.lower()
    signatures = _dkim(raw)
    opendkim, opendkim_reason = _opendkim(raw) if signatures else ("none", "no DKIM-Signature")
    from_domain = _from_domain(raw)
    passing = tuple(s.domain for s in signatures if s.result == "pass")
    if from_domain:
        try:
            record = _dmarc_record(from_domain)
        except dns.exception.DNSException as err:
            return Verdict(
                spf_result, spf_domain, spf_reason, signatures, opendkim, opendkim_reason,
                "temperror", None, f"DMARC record lookup failed: {err}", from_domain, passing,
            )
        result = dmarc.evaluate(
            from_domain, record, spf_result=spf_result, spf_domain=spf_domain, dkim_domains=passing
        )
        dmarc_result, policy, dmarc_reason = result.result, result.policy, result.reason
    else:
        dmarc_result, policy, dmarc_reason = "fail", None, "no single From address (RFC 7489 §6.6.1)"
    return Verdict(
        spf_result, spf_domain, spf_reason, signatures, opendkim, opendkim_reason,
        dmarc_result, policy, dmarc_reason, from_domain, passing,
    )


def _spf(client_ip: str, mail_from: str, helo: str) -> tuple[str, str]:
    try:
        result, explanation = spf.check2(i=client_ip, s=mail_from or f"postmaster@{helo}", h=helo, timeout=10)
    except Exception as err:  # pyspf raises its own errors for broken records
        return "temperror", f"{type(err).__name__}: {err}"
    return str(result), str(explanation)


def _dkim(raw: bytes) -> tuple[DkimSignature, ...]:
    checker = dkim.DKIM(raw)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    results: list[DkimSignature] = []
    for index in range(count):
        try:
            prep = checker.verify_headerprep(index)
            tags = prep[0] if prep else {}
            ok = checker.verify(index)
            reason = ""
        except dkim.DKIMException as err:
            ok, reason = False, str(err)
            tags = {}
        results.append(
            DkimSignature(
                tags.get(b"d", b"").decode("ascii", "replace").lower(),
                tags.get(b"s", b"").decode("ascii", "replace"),
                "pass" if ok else "fail",
                reason,
            )
        )
    return tuple(results)


def _opendkim(raw: bytes) -> tuple[str, str]:
    """Verify with OpenDKIM's ``opendkim-testmsg`` (exit 0: every signature good)."""
    program = binaries.find(OPENDKIM_TESTMSG)
    if program is None:
        return "unavailable", "opendkim-testmsg not installed (apt-get install opendkim-tools)"
    done = subprocess.run([program], input=raw, capture_output=True, timeout=30)
    text = (done.stdout + done.stderr).decode(errors="replace").strip()
    return ("pass" if done.returncode == 0 else "fail"), text[-500:]


def _from_domain(raw: bytes) -> str:
    message = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    values = message.get_all("From") or []
    addresses = email.utils.getaddresses([str(v) for v in values])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        return ""
    return addresses[0][1].rsplit("@", 1)[1].lower()


def _dmarc_record(domain: str) -> str | None:
    """The policy record for a From domain, else its Organizational Domain's (§6.6.3)."""
    for name in dmarc.policy_names(domain):
        try:
            answer = dns.resolver.resolve(name, "TXT", lifetime=10)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        records = [text for text in (txt.from_wire(r.strings) for r in answer) if dmarc.is_dmarc(text)]
        if len(records) == 1:
            return records[0]
    return None
