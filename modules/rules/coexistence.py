"""Which records may share a name with records mailstack does not own: the rule, once.

Real zones are never empty: an apex TXT set carries site-verification tokens beside the
SPF record, an MX set may hold a backup host someone else runs. mailstack owns single
records (RRs), not whole sets, so it can add its SPF string next to
``google-site-verification=…`` and leave the token alone. Some roles, though, admit one
record per name, and a second one is not "coexisting" but broken mail:

- SPF: one ``v=spf1`` record per name, else every SPF check is a permerror (RFC 7208 §3.2);
- DMARC: one ``v=DMARC1`` record at ``_dmarc``, else no policy applies (RFC 7489 §6.6.3),
  and the same for a report authorisation (``…_report._dmarc…``, RFC 7489 §7.1);
- DKIM: a selector names one key; with two, verifiers pick either (RFC 6376 §3.6.2.2),
  so a foreign key at mailstack's selector breaks half the signatures;
- MTA-STS and TLS-RPT: one ``v=STSv1`` / ``v=TLSRPTv1`` record (RFC 8461 §3.1, RFC 8460 §3);
- a null MX stands alone (RFC 7505 §3), and a CNAME owns its whole name (RFC 1034 §3.6.2).

Everything else (other TXT strings, MX hosts, addresses) may share its set. The change
calculator (``mailstack.plan.changes``) turns a second record of an exclusive role into a
conflict, and ``mailstack diff`` uses the same answer to tell "unmanaged" (coexisting)
from "conflicting".
"""

from __future__ import annotations

from mailstack.core.record import Record
from mailstack.rules import dkim, dmarc, mta_sts, spf
from mailstack.rules.mx import is_null

#: Roles of which a name holds at most one record, with the rule that says so.
EXCLUSIVE: dict[str, str] = {
    "spf": "one SPF record per name (RFC 7208 §3.2)",
    "dmarc": "one DMARC record per name (RFC 7489 §6.6.3)",
    "dkim": "one key per DKIM selector (RFC 6376 §3.6.2.2)",
    "mta-sts": "one MTA-STS record per name (RFC 8461 §3.1)",
    "tls-rpt": "one TLS-RPT record per name (RFC 8460 §3)",
    "null-mx": "a null MX stands alone (RFC 7505 §3)",
    "cname": "a CNAME cannot sit beside other records (RFC 1034 §3.6.2)",
}


def role(record: Record) -> str:
    """What a record is for at its name, as far as sharing goes.

    Exclusive roles are the keys of ``EXCLUSIVE``; anything else is ``type`` in lower case
    (``txt``, ``mx``, ``a``), which may be shared.
    """
    if record.type == "CNAME":
        return "cname"
    if record.type == "MX":
        return "null-mx" if is_null(record.content) else "mx"
    if record.type != "TXT":
        return record.type.lower()
    text = record.content
    if spf.is_spf(text):
        return "spf"
    if dkim.is_key_name(record.name) and (record.needs_gateway_key or dkim.is_key_record(text)):
        return "dkim"
    if dmarc.is_dmarc(text) and "._dmarc." in f".{record.name}":
        return "dmarc"
    if mta_sts.is_version(text, mta_sts.STS_VERSION):
        return "mta-sts"
    if mta_sts.is_version(text, mta_sts.TLSRPT_VERSION):
        return "tls-rpt"
    return "txt"


def exclusive(role_name: str) -> bool:
    """True when a name holds at most one record of this role."""
    return role_name in EXCLUSIVE


def clash(planned: Record, live: Record) -> bool:
    """True when ``live`` (someone else's) cannot stay beside ``planned`` at one name.

    Same role and exclusive (a second SPF); a null MX beside any other MX (either way);
    a CNAME beside anything (either way).
    """
    if planned.name != live.name:
        return False
    if planned.type == "CNAME" or live.type == "CNAME":
        return True
    if planned.type != live.type:
        return False
    planned_role, live_role = role(planned), role(live)
    if planned.type == "MX":
        return "null-mx" in (planned_role, live_role)
    return planned_role == live_role and exclusive(planned_role)


def rule(planned: Record, live: Record) -> str:
    """The rule ``clash`` applied, for messages."""
    if planned.type == "CNAME" or live.type == "CNAME":
        return EXCLUSIVE["cname"]
    if planned.type == "MX":
        return EXCLUSIVE["null-mx"]
    return EXCLUSIVE.get(role(planned), "")
