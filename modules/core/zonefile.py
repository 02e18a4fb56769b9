"""Records as BIND zone-file lines and as dnspython rdata, via dnspython.

The RFC 2136 provider, the ``--format zone`` output and the test fixtures that build
zones for BIND all go through here, so the wire form of a Record is decided once.
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mailstack.core import names, txt
from mailstack.core.record import Record


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


def from_rdata(name: str, ttl: int, rdata: dns.rdata.Rdata) -> Record:
    """The Record a DNS answer's rdata publishes: the inverse of ``rdata``.

    TXT character-strings are joined the way mail consumers join them, MX keeps its
    preference in ``priority``, targets lose the trailing dot. ``mailstack diff`` reads
    live answers and the policy pack reads RFC 2136 record values through here.
    """
    rdtype = dns.rdatatype.to_text(rdata.rdtype)
    if rdtype in ("TXT", "SPF"):
        content = txt.from_wire(rdata.strings)  # type: ignore[attr-defined]
        return Record(name, rdtype, content, ttl)
    if rdtype == "MX":
        exchange = rdata.exchange.to_text(omit_final_dot=True) or "."  # type: ignore[attr-defined]
        return Record(name, rdtype, names.normalize(exchange) or ".", ttl, int(rdata.preference))  # type: ignore[attr-defined]
    if rdtype in ("CNAME", "NS", "PTR"):
        return Record(name, rdtype, names.normalize(rdata.target.to_text()), ttl)  # type: ignore[attr-defined]
    return Record(name, rdtype, rdata.to_text(), ttl)


def from_text(name: str, rdtype: str, ttl: int, value: str) -> Record:
    """The Record of one rdata in presentation form (``10 mx1.example.net.``)."""
    parsed = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value)
    return from_rdata(name, ttl, parsed)
