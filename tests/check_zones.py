"""Zones served by the check suite's test BIND: every example stack published as
planned (its third-party targets included), and deliberately broken domains.

Addresses: 127.0.10.0/24 is the check suite's range. Fake third-party hosts (Odoo,
Google, Microsoft, Mailjet) get addresses in it so nothing can ever point outside
loopback. The broken domains live in ``broken.test``; names are documented inline.
"""

from __future__ import annotations

import dataclasses

import base64
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack.config import stackfile
from mailstack.core.model import MailDomain
from mailstack.core.record import Record
from mailstack.lab.tls import self_signed
from mailstack.rules import dkim
from tests import project
from tests.project import planned as plan

BIND_ADDRESS = "127.0.10.1"
BIND_PORT = 5300
#: A UDP socket bound here swallows every query: names delegated to it time out.
DEAD_ADDRESS = "127.0.10.99"
FAKE_HOST = "127.0.10.200"
#: Where tests/test_mta_sts_served.py runs nginx (issue 15's range).
STS_ADDRESS = "127.0.153.10"
#: Stacks whose gateways have real (loopback) MX hosts: the SMTP tests'.
STACKS = ("online", "odoo-sh", "onpremise", "onpremise-m365", "multi-company")


@dataclass
class Keys:
    """RSA key pairs for the fixtures, base64 SPKI (p=) and PEM."""

    private_pem: dict[str, bytes] = field(default_factory=dict)
    public_b64: dict[str, str] = field(default_factory=dict)

    def public_pem(self, name: str) -> str:
        der = base64.b64decode(self.public_b64[name])
        return serialization.load_der_public_key(der).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def make_keys() -> Keys:
    keys = Keys()
    for name, bits in (("gateway", 2048), ("other", 2048), ("k1024", 1024), ("odoo", 2048)):
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        _add(keys, name, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    # cryptography refuses to generate keys under 1024 bits; openssl still can.
    pem = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512"], capture_output=True, check=True
    ).stdout
    _add(keys, "k512", pem)
    return keys


def _add(keys: Keys, name: str, pem: bytes) -> None:
    private = serialization.load_pem_private_key(pem, password=None)
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    keys.private_pem[name] = pem
    keys.public_b64[name] = base64.b64encode(der).decode()


def load_stack(name: str) -> MailDomain:
    """An example stack as the check suite serves it: its MTA-STS policy comes from the
    suite's own policy server (``EXAMPLE_EXTRA``'s host on loopback), not from the
    gateways' documentation addresses, so the suite's stacks say ``serve: external``
    (the CNAME the gateways' serving plans is proven in tests/test_mta_sts_served.py
    and by the lab, whose nginx listens on the gateways' addresses)."""
    stack = stackfile.load(project.stack_path(name))
    if stack.mta_sts is not None and stack.mta_sts.serve == "gateway":
        stack = dataclasses.replace(stack, mta_sts=dataclasses.replace(stack.mta_sts, serve="external"))
    return stack


def split_by_zone(stack: MailDomain, records: list[Record]) -> dict[str, list[Record]]:
    zones: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        zones[stack.dns.zone_of(record.name)].append(record)
    return zones


def third_party(keys: Keys) -> dict[str, list[str]]:
    """Fake provider zones: what the example stacks include, point or CNAME at."""
    odoo_key = dkim.txt_value(keys.public_b64["odoo"])
    ms_key = dkim.txt_value(keys.public_b64["other"])
    return {
        "odoo.com": [
            '_spf 300 IN TXT "v=spf1 ip4:127.0.10.210 -all"',
            f"odoo._domainkey 300 IN TXT {_quoted(odoo_key)}",
            f"examplecorp 300 IN A {FAKE_HOST}",
            f"example-shop 300 IN A {FAKE_HOST}",
            f"group 300 IN A {FAKE_HOST}",
        ],
        "mailjet.com": ['spf 300 IN TXT "v=spf1 ip4:127.0.10.211 -all"'],
        "google.com": ['_spf 300 IN TXT "v=spf1 ip4:127.0.10.212 -all"', f"smtp 300 IN A {FAKE_HOST}"],
        "outlook.com": [
            'spf.protection 300 IN TXT "v=spf1 ip4:127.0.10.213 -all"',
            f"contoso-example.mail.protection 300 IN A {FAKE_HOST}",
        ],
        "onmicrosoft.com": [
            f"selector1-contoso-example._domainkey.contoso 300 IN TXT {_quoted(ms_key)}",
            f"selector2-contoso-example._domainkey.contoso 300 IN TXT {_quoted(ms_key)}",
        ],
        # Microsoft 365's new forms (onpremise-m365 gives them): DKIM targets under
        # dkim.mail.microsoft, the MX of a tenant with inbound DANE under mx.microsoft.
        "mail.microsoft": [
            f"selector1-contoso-example._domainkey.contoso.n-v1.dkim 300 IN TXT {_quoted(ms_key)}",
            f"selector2-contoso-example._domainkey.contoso.n-v1.dkim 300 IN TXT {_quoted(ms_key)}",
        ],
        "mx.microsoft": [f"contoso-example.l-v1 300 IN A {FAKE_HOST}"],
        "reports.test": [
            # rua-ok.broken.test is authorised, rua.broken.test is not (RFC 7489 §7.1)
            'rua-ok.broken.test._report._dmarc 300 IN TXT "v=DMARC1"',
        ],
    }


def _quoted(value: str) -> str:
    from mailstack.core import txt

    return txt.quoted(value)


def reverse_zones() -> dict[str, list[str]]:
    """PTRs of the example gateways (forward-confirmed) and of the SMTP test hosts.

    127.0.10.202 deliberately has no PTR (missing reverse DNS); 127.0.10.203 has a PTR
    whose name does not resolve back (not forward-confirmed).
    """
    return {
        "2.0.192.in-addr.arpa": ["10 300 IN PTR mx1.example.net."],
        "100.51.198.in-addr.arpa": ["20 300 IN PTR mx2.example.net."],
        "8.b.d.0.1.0.0.2.ip6.arpa": ["0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 300 IN PTR mx1.example.net."],
        "10.0.127.in-addr.arpa": [
            "21 300 IN PTR mx.good.smtp.test.",
            "22 300 IN PTR mx.relay.smtp.test.",
            "23 300 IN PTR mx.plain.smtp.test.",
            "201 300 IN PTR gw.fcrdns.broken.test.",
            "203 300 IN PTR elsewhere.broken.test.",
        ],
    }


def broken(keys: Keys) -> list[str]:
    """``broken.test``: one subdomain per defect (relative names)."""
    k1024 = dkim.txt_value(keys.public_b64["k1024"])
    k512 = "v=DKIM1; k=rsa; p=" + keys.public_b64["k512"]  # txt_value refuses < 1024 bits
    other = dkim.txt_value(keys.public_b64["other"])
    good = dkim.txt_value(keys.public_b64["gateway"])
    lines = [
        f"real 300 IN A {FAKE_HOST}",
        f"real 300 IN MX 10 real.broken.test.",
        # two SPF records at one name
        'two-spf 300 IN TXT "v=spf1 ip4:127.0.10.50 -all"',
        'two-spf 300 IN TXT "v=spf1 ip4:127.0.10.51 -all"',
        # 11 lookups through nested includes: 3 + 3 + 3 + 2
        'lookups 300 IN TXT "v=spf1 a mx include:n1.lookups.broken.test -all"',
        'n1.lookups 300 IN TXT "v=spf1 a mx include:n2.lookups.broken.test -all"',
        'n2.lookups 300 IN TXT "v=spf1 a mx include:n3.lookups.broken.test -all"',
        'n3.lookups 300 IN TXT "v=spf1 a mx -all"',
        # exactly 10 lookups: the limit, passes
        'ten 300 IN TXT "v=spf1 a mx include:n1.ten.broken.test -all"',
        'n1.ten 300 IN TXT "v=spf1 a mx include:n2.ten.broken.test -all"',
        'n2.ten 300 IN TXT "v=spf1 a mx include:n3.ten.broken.test -all"',
        'n3.ten 300 IN TXT "v=spf1 a -all"',
        # three void lookups (names that do not exist)
        'void 300 IN TXT "v=spf1 a:nx1.void.broken.test a:nx2.void.broken.test a:nx3.void.broken.test ~all"',
        # redirect counts too: 1 + the 10 of ten.broken.test
        'redirect 300 IN TXT "v=spf1 redirect=ten.broken.test"',
        # an include of a domain without SPF (permerror), one void lookup
        'include-nx 300 IN TXT "v=spf1 include:nx.broken.test -all"',
        # terms whose queries time out (below the dead delegation): counts undecidable
        'spf-slow 300 IN TXT "v=spf1 include:x.slow.broken.test a:y.slow.broken.test -all"',
        # an mx term naming 11 MX hosts (RFC 7208 §4.6.4: at most 10)
        'mx-limit 300 IN TXT "v=spf1 mx:mxmany.broken.test -all"',
        # an include loop
        'loop 300 IN TXT "v=spf1 include:loop2.broken.test -all"',
        'loop2 300 IN TXT "v=spf1 include:loop.broken.test -all"',
        # +all, ?all, no all
        'plusall 300 IN TXT "v=spf1 ip4:127.0.10.50 +all"',
        'neutral 300 IN TXT "v=spf1 ip4:127.0.10.50 ?all"',
        # Odoo's SPF include without Odoo's DKIM CNAME (an --domain hint)
        'odoo-half 300 IN TXT "v=spf1 include:_spf.odoo.com ~all"',
        # Odoo's DKIM CNAME without Odoo's SPF include
        'odoo-nospf 300 IN TXT "v=spf1 mx -all"',
        "odoo._domainkey.odoo-nospf 300 IN CNAME odoo._domainkey.odoo.com.",
        # syntax error, oversized record
        'spf-syntax 300 IN TXT "v=spf1 ip4:300.1.1.1 -all"',
        "big 300 IN TXT " + _quoted("v=spf1 " + " ".join(f"ip4:127.0.10.{i}" for i in range(1, 40)) + " -all"),
        # DKIM: sizes, revoked, test mode, a key other than the declared one, garbage
        f"k1024._domainkey.dkim 300 IN TXT {_quoted(k1024)}",
        f"k512._domainkey.dkim 300 IN TXT {_quoted(k512)}",
        'revoked._domainkey.dkim 300 IN TXT "v=DKIM1; k=rsa; p="',
        f"testing._domainkey.dkim 300 IN TXT {_quoted(good + '; t=y')}",
        f"other._domainkey.dkim 300 IN TXT {_quoted(other)}",
        f"good._domainkey.dkim 300 IN TXT {_quoted(good)}",
        # a stale key left beside the current one
        f"two-keys._domainkey.dkim 300 IN TXT {_quoted(good)}",
        f"two-keys._domainkey.dkim 300 IN TXT {_quoted(other)}",
        'garbage._domainkey.dkim 300 IN TXT "v=DKIM1; k=rsa; p=notbase64!!"',
        # DMARC: syntax errors, p=none without rua, external rua with and without consent
        '_dmarc.dmarc-syntax 300 IN TXT "v=DMARC1; p=maybe; pct=150"',
        '_dmarc.dmarc-none 300 IN TXT "v=DMARC1; p=none"',
        '_dmarc.dmarc-two 300 IN TXT "v=DMARC1; p=reject"',
        '_dmarc.dmarc-two 300 IN TXT "v=DMARC1; p=none"',
        '_dmarc.rua 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@reports.test"',
        '_dmarc.rua-ok 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@reports.test"',
        # MX: to a CNAME, to an IP, to a name without address, null MX mixed
        "mxcname 300 IN MX 10 alias.broken.test.",
        "alias 300 IN CNAME real.broken.test.",
        "mxip 300 IN MX 10 127.0.10.200.",
        "mxdangling 300 IN MX 10 nowhere.broken.test.",
        "nullmix 300 IN MX 0 .",
        "nullmix 300 IN MX 10 real.broken.test.",
        "nullmx 300 IN MX 0 .",
        "rootodoo 300 IN MX 10 examplecorp.odoo.com.",
        # FCrDNS: gw has a PTR and A (confirmed); .202 has no PTR; .203's PTR name has no A
        "gw.fcrdns 300 IN A 127.0.10.201",
        # MTA-STS policy hosts (tests/test_checks_mta_sts.py serves them on .40; .41 is silent)
        "mta-sts.sts-wrong 300 IN A 127.0.10.40",
        "mta-sts.sts-404 300 IN A 127.0.10.40",
        "mta-sts.sts-badcert 300 IN A 127.0.10.40",
        "mta-sts.sts-html 300 IN A 127.0.10.40",
        "mta-sts.sts-garbage 300 IN A 127.0.10.40",
        "mta-sts.sts-down 300 IN A 127.0.10.41",
        # MTA-STS served by real nginx with the gateway's rendered site (tests/
        # test_mta_sts_served.py, on 127.0.153.10): a good policy, a weak one (testing,
        # one day, a wildcard missing a two-label MX), a stale one (enforce, an MX missing)
        *(f"mta-sts.{name} 300 IN A {STS_ADDRESS}" for name in ("sts-good", "sts-weak", "sts-stale")),
        "sts-good 300 IN MX 10 mx1.sts-good.broken.test.",
        "sts-good 300 IN MX 20 mx2.sts-good.broken.test.",
        "sts-weak 300 IN MX 10 mx1.sts-weak.broken.test.",
        "sts-weak 300 IN MX 20 a.b.sts-weak.broken.test.",
        '_mta-sts.sts-weak 300 IN TXT "v=STSv1; id=weak1"',
        "sts-stale 300 IN MX 10 mx1.sts-stale.broken.test.",
        "sts-stale 300 IN MX 20 mx2.sts-stale.broken.test.",
        '_mta-sts.sts-stale 300 IN TXT "v=STSv1; id=stale1"',
        # a delegation to a server that never answers: every name below times out
        "slow 300 IN NS ns.slow.broken.test.",
        f"ns.slow 300 IN A {DEAD_ADDRESS}",
    ]
    lines += [f"mxmany 300 IN MX {i} real.broken.test." if i == 0 else f"mxmany 300 IN MX {i} mx{i}.broken.test." for i in range(11)]
    for prefix in ("lookups", "n1.lookups", "n2.lookups", "n3.lookups", "ten", "n1.ten", "n2.ten", "n3.ten"):
        lines += [f"{prefix} 300 IN A {FAKE_HOST}", f"{prefix} 300 IN MX 10 real.broken.test."]
    return lines


#: A zone BIND refuses to load: every name in it answers SERVFAIL.
SERVFAIL_ZONE = ("servfail.test", ["@ 300 IN A not-an-address"])


#: Raw lines added to example zones: the MTA-STS policy host of the on-premise example.
EXAMPLE_EXTRA = {"example.net": ["mta-sts 300 IN A 127.0.10.40"]}


def example_zones(keys: Keys) -> dict[str, list[Record]]:
    """Every example stack's planned records, grouped by zone (gateway key known)."""
    zones: dict[str, list[Record]] = defaultdict(list)
    for name in STACKS:
        stack = load_stack(name)
        for zone, records in split_by_zone(stack, plan(stack, keys.public_pem("gateway"))).items():
            zones[zone] += records
    return zones


def smtp_zones() -> dict[str, list[str]]:
    """``smtp.test``: three domains whose MX are the SMTP tests' Postfix instances.

    good: the rendered gateway (STARTTLS, no relay, recipients checked); relay: an open
    relay; plain: no STARTTLS; refuse: refuses EHLO; down: nothing listens. Each MX name has an A record on its own address.
    """
    return {
        "smtp.test": [
            "good 300 IN MX 10 mx.good.smtp.test.",
            "mx.good 300 IN A 127.0.10.21",
            "relay 300 IN MX 10 mx.relay.smtp.test.",
            "mx.relay 300 IN A 127.0.10.22",
            "plain 300 IN MX 10 mx.plain.smtp.test.",
            "mx.plain 300 IN A 127.0.10.23",
            "refuse 300 IN MX 10 mx.refuse.smtp.test.",
            "mx.refuse 300 IN A 127.0.10.24",
            "picky 300 IN MX 10 mx.picky.smtp.test.",
            "mx.picky 300 IN A 127.0.10.26",
            "down 300 IN MX 10 mx.down.smtp.test.",
            # an alias domain served by the good gateway's MX, which was not rendered for it
            "alias 300 IN MX 10 mx.good.smtp.test.",
            "mx.down 300 IN A 127.0.10.25",
        ]
    }


#: Policy hosts the test HTTPS server's certificate covers (sts-badcert is left out).
POLICY_HOSTS = ("mta-sts.example.net", "mta-sts.sts-wrong.broken.test", "mta-sts.sts-404.broken.test",
                "mta-sts.sts-html.broken.test", "mta-sts.sts-garbage.broken.test")


def policy_certificate(base: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the policy hosts (the test trusts it as its CA)."""
    cert_pem, key_pem = self_signed(POLICY_HOSTS, days=30, ca=True)
    cert_path, key_path = base / "policy.pem", base / "policy.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return cert_path, key_path


def policy_responses() -> dict[str, tuple[int, str, str]]:
    """Host -> (HTTP status, media type, body) of the test policy server."""
    from mailstack.rules import mta_sts

    def policy(domain: str, mode: str = "enforce") -> str:
        hosts = ["mx1.example.net", "mx2.example.net"] if domain == "example.net" else [f"gw.{domain}"]
        return mta_sts.policy_text(mode, hosts, 604800)

    return {
        "mta-sts.example.net": (200, "text/plain", policy("example.net")),
        "mta-sts.sts-wrong.broken.test": (200, "text/plain", policy("sts-wrong.broken.test", "testing")),
        "mta-sts.sts-404.broken.test": (404, "text/plain", "not here\n"),
        "mta-sts.sts-badcert.broken.test": (200, "text/plain", policy("sts-badcert.broken.test")),
        "mta-sts.sts-html.broken.test": (200, "text/html", policy("sts-html.broken.test")),
        "mta-sts.sts-garbage.broken.test": (200, "text/plain", "hello\n"),
    }
