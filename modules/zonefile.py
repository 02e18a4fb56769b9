"""Records as BIND zone-file lines and as dnspython rdata, via dnspython.

The RFC 2136 provider, the ``--format zone`` output and the test fixtures that build
zones for BIND all go through here, so the wire form of a Record is decided once.
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from modules import txt
from modules.model import Record


def rdata_text(record: Record) -> str:
    """The record's rdata in zone-file presentation form (absolute names, TXT split)."""
    if record.type == "TXT":
        return txt.quoted(record.content)
    if record.type == "MX":
        target = "." if record.content == "." else record.content + "."
        return f"{record.priority} {target}"
    if record.type in ("CNAME", "NS", "PTR"):
        return record.content + "."
    return record.content


def rdata(record: Record) -> dns.rdata.Rdata:
    """The record's rdata as a dnspython object (validated by dnspython)."""
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(record.type), rdata_text(record))


def line(record: Record) -> str:
    """One zone-file line: ``name. ttl IN TYPE rdata``."""
    return f"{record.name}. {record.ttl} IN {record.type} {rdata(record).to_text()}"


def lines(records: Iterable[Record]) -> list[str]:
    """Zone-file lines for many records, in plan order."""
    return [line(record) for record in records]
