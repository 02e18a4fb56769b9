"""Signed zones on a real BIND for the DNSSEC and DANE tests (host namespace,
127.0.152.53, a free port):

- dnssec.test            the parent, signed by named (dnssec-policy); its DS is the anchor
- good.dnssec.test       signed by named; MX, SPF, DMARC, TLSA of the gateway
- mismatch.dnssec.test   signed by named; a TLSA that matches no certificate
- bad.dnssec.test        dnssec-signzone, then the SPF TXT edited: its RRSIG fails
- expired.dnssec.test    dnssec-signzone -s 20240101000000 -e 20240201000000
- unsigned.dnssec.test   unsigned, delegated without DS; holds a TLSA (DANE claimed
                         on an unsigned zone)

For the validator's aliases, proofs and algorithms (each zone also holds the mail lines):

- alias.dnssec.test      signed by named: DKIM selectors that are CNAMEs into provider
                         (secure), unsigned (insecure), bad (bogus), a name provider does
                         not have; a CNAME loop; ``chain0``: 9 CNAMEs to provider's key
                         (``chain1``: 8); ``mail`` DNAME provider.dnssec.test.
- provider.dnssec.test   signed by named: ``selector1._domainkey`` TXT (a DKIM key)
- wild.dnssec.test       signed by named (NSEC): ``*.wc`` TXT, a wildcard
- nsec3.dnssec.test      dnssec-signzone -3 - -H 0 (RFC 9276's parameters); ``*.wc`` TXT
- iter.dnssec.test       dnssec-signzone -3 AABBCCDD -H 100: iterations above the
                         validator's cap (50), below BIND 9.18's maximum (150)
- salted.dnssec.test     dnssec-signzone -3 AABBCCDD -H 5: under the cap, against RFC 9276 §3.1
- optout.dnssec.test     dnssec-signzone -3 - -H 0 -A (opt-out); ``child`` delegated
                         without DS to child.optout.dnssec.test (unsigned)
- unknown-digest / unknown-alg / wrong-digest.dnssec.test
                         unsigned zones whose parent holds a DS of digest type 99
                         (unknown), of algorithm 253 (PRIVATEDNS), or of algorithm 13,
                         SHA-256 with a digest no key has (bogus)

``tlsa`` maps a zone to the TLSA lines of its MX host; the DANE tests give the
gateway's real digest for good and unsigned. ``more`` adds zones below the parent
(label -> signed by named or not, its zone lines): the DANE tests' DANE-TA zones and
MX hosts that are aliases.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name

from mailstack.checks.dns.dnssec import Anchor, parse_anchors
from mailstack.checks.dns.resolver import Resolver, Server
from mailstack.lab import dnssec as signing
from mailstack.lab.bind import BindServer
from tests.ports import free_port

ADDRESS = "127.0.152.53"
PARENT = "dnssec.test"
POLICY_SIGNED = ("good", "mismatch", "alias", "provider", "wild")
OFFLINE: dict[str, dict[str, Any]] = {
    "bad": {}, "expired": {"inception": "20240101000000", "expiration": "20240201000000"},
    "nsec3": {"nsec3": ("-3", "-", "-H", "0")},
    "iter": {"nsec3": ("-3", "AABBCCDD", "-H", "100")},
    "salted": {"nsec3": ("-3", "AABBCCDD", "-H", "5")},
    "optout": {"nsec3": ("-3", "-", "-H", "0", "-A")},
}
UNSIGNED = ("unsigned",)
#: Unsigned zones with a DS at the parent the validator cannot use (or that matches nothing).
FAKE_DS = {
    "unknown-digest": "12345 13 99 " + "AB" * 32,
    "unknown-alg": "12345 253 2 " + "AB" * 32,
    "wrong-digest": "12345 13 2 " + "AB" * 32,
}
EXTRA = {
    "alias": [
        "selector1._domainkey 300 IN CNAME selector1._domainkey.provider.dnssec.test.",
        "tounsigned._domainkey 300 IN CNAME unsigned.dnssec.test.",
        "tobad._domainkey 300 IN CNAME bad.dnssec.test.",
        "gone._domainkey 300 IN CNAME gone._domainkey.provider.dnssec.test.",
        "loop1 300 IN CNAME loop2.alias.dnssec.test.",
        "loop2 300 IN CNAME loop1.alias.dnssec.test.",
        "mail 300 IN DNAME provider.dnssec.test.",
        # a chain of 9 aliases to the provider's key: one more than the validator follows
        *(f"chain{i} 300 IN CNAME chain{i + 1}.alias.dnssec.test." for i in range(8)),
        "chain8 300 IN CNAME selector1._domainkey.provider.dnssec.test.",
    ],
    "provider": ['selector1._domainkey 300 IN TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="'],
    "wild": ['*.wc 300 IN TXT "wildcard"'],
    "nsec3": ['*.wc 300 IN TXT "wildcard"'],
    "optout": ["child 300 IN NS ns1.child.optout.dnssec.test.", f"ns1.child 300 IN A {ADDRESS}"],
}


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
    for label in (*POLICY_SIGNED, *OFFLINE, *UNSIGNED, *FAKE_DS):
        zone = f"{label}.{PARENT}"
        parent_lines += [f"{label} 300 IN NS ns1.{zone}.", f"ns1.{label} 300 IN A {ADDRESS}"]
        lines = mail_lines(zone, mx_addresses.get(label, "127.0.152.99"), tlsa.get(label, ())) + EXTRA.get(label, [])
        if label in FAKE_DS:
            parent_lines.append(f"{label} 300 IN DS {FAKE_DS[label]}")
        if label in OFFLINE:
            bind.add_zone(zone, extra_lines=lines)
            text = "\n".join(bind.zones[zone].lines) + "\n"
            signed, ds = signing.sign_offline(workdir, zone, text, tamper=_tamper if label == "bad" else None, **OFFLINE[label])
            bind.add_zone_file(zone, signed)
            parent_lines += ds
        else:
            bind.add_zone(zone, extra_lines=lines, signed=label in POLICY_SIGNED)
    bind.add_zone(f"child.optout.{PARENT}", extra_lines=mail_lines(f"child.optout.{PARENT}", "127.0.152.99", ()))
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
