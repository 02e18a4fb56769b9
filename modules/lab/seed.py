"""Seed zones: the user's current zone, loaded into the lab's BIND before the plan is applied.

``mailstack lab up --seed-zone FILE`` rehearses a change against a copy of the real
zone: a BIND zone file as Cloudflare and most DNS hosts export it. The file is untrusted
input, so it is parsed here with dnspython (``$INCLUDE`` and ``$GENERATE`` refused: a
seed names no other file) and checked before anything starts; every error names the
file, the line and the reason (exit 2), and nothing is written.

The origin is the file's ``$ORIGIN``, else the owner of its SOA record (exports usually
write absolute names and no ``$ORIGIN``; some write the SOA owner without its final dot,
which names the origin all the same). The seed must be one of the zones the stack writes
to, each zone seeded at most once, and no planned record may sit at a name that is a
CNAME in the seed (RFC 1034 §3.6.2) unless it is that very CNAME.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.zone
import dns.zonefile

from mailstack.core import names, zonefile
from mailstack.core.errors import MailstackError
from mailstack.core.record import Record
from mailstack.plan import Plan

#: A zone export larger than this is not a zone mailstack rehearses against.
MAX_BYTES = 16 * 1024 * 1024


class SeedError(MailstackError):
    """A seed zone that cannot be used: ``FILE:LINE: reason``."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"--seed-zone {where}: {reason}")


@dataclass(frozen=True)
class Seed:
    """One parsed seed zone and where each of its record sets was written."""

    path: Path
    origin: str
    origin_line: int
    zone: dns.zone.Zone
    #: (name, TYPE) → the line its first record is on.
    lines: Mapping[tuple[str, str], int]

    def records(self) -> dict[str, tuple[Record, ...]]:
        """Every record of the seed as Records, by name."""
        found: dict[str, list[Record]] = {}
        for name, rdataset in self.zone.iterate_rdatasets():
            owner = names.normalize(name.to_text())
            found.setdefault(owner, []).extend(zonefile.from_rdata(owner, rdataset.ttl, r) for r in rdataset)
        return {name: tuple(records) for name, records in found.items()}

    def zone_text(self) -> str:
        """The zone as BIND loads it: absolute names, one record per line."""
        return self.zone.to_text(sorted=True, relativize=False, nl="\n")

    def line_of(self, name: str, rdtype: str) -> int | None:
        return self.lines.get((name, rdtype))


class _Owner:
    """Forwards a zone transaction, noting the line each record set first appears on."""

    def __init__(self, txn: Any, reader: _LineReader) -> None:
        self._txn, self._reader = txn, reader

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._txn, attribute)

    def add(self, name: dns.name.Name, ttl: int, rdata: Any) -> None:
        key = (names.normalize(name.to_text()), dns.rdatatype.to_text(rdata.rdtype))
        self._reader.lines.setdefault(key, self._reader.line)
        self._txn.add(name, ttl, rdata)


class _LineReader(dns.zonefile.Reader):
    """dnspython's zone-file reader, remembering the line each record starts on."""

    def __init__(self, tok: dns.tokenizer.Tokenizer, txn: Any) -> None:
        self.lines: dict[tuple[str, str], int] = {}
        self.line = 0
        super().__init__(tok, dns.rdataclass.IN, txn, allow_include=False, allow_directives=("$ORIGIN", "$TTL"))
        self.txn = _Owner(self.txn, self)  # type: ignore[assignment]

    def _rr_line(self) -> None:
        self.line = self.tok.line_number
        super()._rr_line()


def _origin(path: Path, text: str) -> tuple[str, int, str]:
    """The origin, the line that names it, and the text to parse (see the module doc)."""
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        tokens = line.split(";", 1)[0].split()
        if tokens and tokens[0].upper() == "$ORIGIN" and len(tokens) > 1:
            return _absolute(path, number, tokens[1]), number, text
        if tokens and not line[:1].isspace() and "SOA" in (t.upper() for t in tokens[1:4]):
            owner = tokens[0]
            if owner == "@":
                break
            origin = _absolute(path, number, owner if owner.endswith(".") else owner + ".")
            if not owner.endswith("."):
                lines[number - 1] = "@" + line[len(owner):]
            return origin, number, f"$ORIGIN {origin}.\n" + "\n".join(lines) + "\n"
    raise SeedError(path, None, "cannot tell the zone's origin: the file has neither $ORIGIN nor an SOA record with its owner name")


def _absolute(path: Path, line: int, text: str) -> str:
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as err:
        raise SeedError(path, line, f"{text!r} is not a zone name: {err}") from err
    return names.normalize(name.to_text())


def load(path: Path) -> Seed:
    """Parse one seed zone file; SeedError (file, line, reason) when it cannot be used."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SeedError(path, None, f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SeedError(path, None, err.strerror or str(err)) from err
    except UnicodeDecodeError as err:
        raise SeedError(path, None, f"not a UTF-8 text file ({err.reason} at byte {err.start})") from err
    origin, origin_line, source = _origin(path, text)
    offset = 0 if source is text else 1  # the $ORIGIN line _origin put in front
    zone = dns.zone.Zone(dns.name.from_text(origin + "."), relativize=False)
    tokenizer = dns.tokenizer.Tokenizer(source, str(path))
    reader: _LineReader | None = None
    try:
        with zone.writer() as txn:
            reader = _LineReader(tokenizer, txn)
            reader.read()
        zone.check_origin()
    except dns.zonefile.CNAMEAndOtherData as err:
        raise SeedError(path, _shift(reader.line if reader else None, offset), f"a CNAME beside other records: {err} (RFC 1034 §3.6.2)") from err
    except dns.exception.SyntaxError as err:
        line, detail = _located(str(err), str(path), offset)
        raise SeedError(path, line, detail) from err
    except dns.zone.NoSOA as err:
        raise SeedError(path, origin_line, f"no SOA record at the origin {origin}") from err
    except dns.zone.NoNS as err:
        raise SeedError(path, origin_line, f"no NS records at the origin {origin}") from err
    except dns.exception.DNSException as err:
        raise SeedError(path, _shift(reader.line if reader else None, offset), str(err) or type(err).__name__) from err
    assert reader is not None
    lines = {key: line - offset for key, line in reader.lines.items()}
    return Seed(path, origin, origin_line, zone, lines)


def _shift(line: int | None, offset: int) -> int | None:
    return None if line is None else max(line - offset, 1)


def _located(message: str, filename: str, offset: int) -> tuple[int | None, str]:
    """dnspython's ``FILE:LINE: detail`` as the line of the user's own file and the detail."""
    prefix = f"{filename}:"
    if message.startswith(prefix):
        number, _, detail = message[len(prefix):].partition(":")
        if number.isdigit():
            return max(int(number) - offset, 1), detail.strip() or "syntax error"
    return None, message


def check(seeds: Iterable[Seed], plan: Plan) -> None:
    """Refuse seeds the plan cannot be rehearsed on: another origin, a zone seeded twice,
    a planned record at a name that is a CNAME in the seed."""
    zones = plan.managed_zones
    seen: dict[str, Path] = {}
    for seed in seeds:
        if seed.origin not in zones:
            raise SeedError(seed.path, seed.origin_line, f"the zone is {seed.origin}, but the stack writes to {', '.join(zones)}")
        if seed.origin in seen:
            raise SeedError(seed.path, seed.origin_line, f"zone {seed.origin} is already seeded by {seen[seed.origin]}")
        seen[seed.origin] = seed.path
        live = seed.records()
        for record in plan.records:
            if plan.zone_of(record.name) != seed.origin:
                continue
            cname = next((r for r in live.get(record.name, ()) if r.type == "CNAME"), None)
            if cname is not None and (record.type, record.content) != ("CNAME", cname.content):
                raise SeedError(seed.path, seed.line_of(record.name, "CNAME"), (
                    f"{record.name} is a CNAME to {cname.content} in the seed zone, and the stack plans {record.type} "
                    f"{record.value!r} there; a CNAME cannot sit beside other records (RFC 1034 §3.6.2): remove the "
                    "CNAME from the zone, or plan nothing at that name"))
