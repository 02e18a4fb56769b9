"""Which DNS records must survive a change: the deletion rule, written once.

A Pulumi policy only sees the resources a program registers; a record that a change
deletes is simply absent, so no policy can refuse its deletion. The engine can: it
refuses to delete (or replace) a resource whose state carries ``protect``. So the rule
is expressed as a protect flag: the Pulumi components register the mail-critical
records protected unless ``mailstack:dns.allowDelete`` is true, and the policy pack
refuses a program that registers them unprotected. Deleting such a record then takes
two reviewed steps: a change that sets ``allowDelete`` (which unprotects), then the
change that removes the record. See docs/ci-gate.md.

The purpose is read from the record itself (type, name, content), not from
``Record.purpose``, so the policy pack, which sees raw resource inputs, classifies a
record exactly as the component does.
"""

from __future__ import annotations

from mailstack.core.record import Record
from mailstack.rules import dkim, dmarc, spf

#: The purposes whose records are protected: without them mail stops or fails DMARC.
PROTECTED_PURPOSES = frozenset({"mx", "spf", "dkim", "dmarc"})


def mail_purpose(record: Record) -> str | None:
    """What a record is for in mail (mx, spf, dkim, dmarc), None for anything else."""
    if record.type == "MX":
        return "mx"
    if dkim.is_key_name(record.name) and record.type in ("TXT", "CNAME"):
        return "dkim"
    if record.type == "TXT" and dmarc.is_policy_name(record.name):
        return "dmarc"
    if record.type == "TXT" and spf.is_spf(record.content):
        return "spf"
    return None


def should_protect(record: Record, allow_delete: bool) -> bool:
    """True when the record must be registered with Pulumi's ``protect`` flag."""
    return not allow_delete and mail_purpose(record) in PROTECTED_PURPOSES
