"""Signed zones on a real BIND for the DNSSEC and DANE tests (host namespace,
127.0.152.53, a free port):

- dnssec.test            the parent, signed by named (dnssec-policy); its DS is the anchor
- good.dnssec.test       signed by named; MX, SPF, DMARC, TLSA of the gateway
- mismatch.dnssec.test   signed by named; a TLSA that matches no certificate
- bad.dnssec.test        dnssec-signzone, then the SPF TXT edited: its RRSIG fails
- expired.dnssec.test    dnssec-signzone -s 20240101000000 -e 20240201000000
- unsigned.dnssec.test   unsigned, delegated without DS; holds a TLSA (DANE claimed
                         on an unsigned zone)

``tlsa`` maps a zone to the TLSA lines of its MX host; the DANE tests give the
gateway's real digest for good and unsigned. ``more`` adds zones below the parent
(label -> signed by named or not, its zone lines): the DANE tests' DANE-TA zones and
MX hosts that are aliases.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import dns.name

from mailstack.checks.dns.dnssec import Anchor, parse_anchors
from mailstack.checks.dns.resolver import Resolver, Server
from mailstack.lab import dnssec as signing
from mailstack.lab.bind import BindServer
from tests.ports import free_port

ADDRESS = "127.0.152.53"
PARENT = "dnssec.test"
POLICY_SIGNED = ("good", "mismatch")
OFFLINE = {"bad": {}, "expired": {"inception": "20240101000000", "expiration": "20240201000000"}}
UNSIGNED = ("unsigned",)


def mail_lines(zone: str, mx_address: str, tlsa: tuple[str, ...]) -> list[str]:
    return [
        f"@ 300 IN MX 10 mx.{zone}.",
        f"mx 300 IN A {mx_address}",
        '@ 300 IN TXT "v=spf1 mx -all"',
        '_dmarc 300 IN TXT "v=DMARC1; p=reject"',
        *(f"_25._tcp.mx 300 IN TLSA {t}" for t in tlsa),
    ]


@dataclass
class SignedLab:
    bind: BindServer
    port: int
    anchors: Mapping[dns.name.Name, Anchor]
    anchor_text: str

    def resolver(self) -> Resolver:
        return Resolver((Server(ADDRESS, self.port),), 2.0).cached()


def start(workdir: Path, mx_addresses: Mapping[str, str], tlsa: Mapping[str, tuple[str, ...]],
          more: Mapping[str, tuple[bool, list[str]]] | None = None) -> Iterator[SignedLab]:
    """Serve the zones (``mx_addresses``/``tlsa`` by first label) until closed."""
    port = free_port(ADDRESS)
    bind = BindServer(workdir, ADDRESS, port)
    parent_lines: list[str] = []
    for label, (sign, lines) in (more or {}).items():
        zone = f"{label}.{PARENT}"
        parent_lines += [f"{label} 300 IN NS ns1.{zone}.", f"ns1.{label} 300 IN A {ADDRESS}"]
        bind.add_zone(zone, extra_lines=lines, signed=sign)
    for label in (*POLICY_SIGNED, *OFFLINE, *UNSIGNED):
        zone = f"{label}.{PARENT}"
        parent_lines += [f"{label} 300 IN NS ns1.{zone}.", f"ns1.{label} 300 IN A {ADDRESS}"]
        lines = mail_lines(zone, mx_addresses.get(label, "127.0.152.99"), tlsa.get(label, ()))
        if label in OFFLINE:
            bind.add_zone(zone, extra_lines=lines)
            text = "\n".join(bind.zones[zone].lines) + "\n"
            signed, ds = signing.sign_offline(workdir, zone, text, tamper=_tamper if label == "bad" else None, **OFFLINE[label])
            bind.add_zone_file(zone, signed)
            parent_lines += ds
        else:
            bind.add_zone(zone, extra_lines=lines, signed=label in POLICY_SIGNED)
    bind.add_zone(PARENT, extra_lines=parent_lines, signed=True)
    anchor_text = "\n".join(bind.ds_lines(PARENT)) + "\n"
    bind.start()
    try:
        yield SignedLab(bind, port, parse_anchors(anchor_text), anchor_text)
    finally:
        bind.stop()


def _tamper(signed: str) -> str:
    assert '"v=spf1 mx -all"' in signed
    return signed.replace('"v=spf1 mx -all"', '"v=spf1 +all"')
