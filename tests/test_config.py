"""Config validation (mailstack.config): every bad value is refused with one message
naming its key, all problems of a declaration at once, nothing half-built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailstack import plan
from mailstack.config import stackfile
from mailstack.config.stack import from_config
from mailstack.core.errors import ConfigError, ConfigErrors, MailstackError, format_path
from mailstack.core.model import Hosting, InboundMode, SenderKind
from tests import project

BASE: dict[str, Any] = {
    "domain": "example.com",
    "odoo": {"hosting": "online", "database": "db"},
    "outbound": ["odoo"],
    "inbound": {"mode": "odoo-mx", "subdomain": "mail"},
}
ONPREM: dict[str, Any] = {
    "domain": "example.net",
    "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "prod"},
    "outbound": ["gateway"],
    "inbound": {"mode": "gateway"},
    "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}],
}
ELEVEN = " ".join(f"include:s{i}.example.net" for i in range(10))


def errors_of(declaration: dict[str, Any]) -> list[str]:
    """Every error of a declaration as a user sees it: its keys, then its plan."""
    with pytest.raises(ConfigErrors) as excinfo:
        plan.build(from_config(declaration))
    return [str(e) for e in excinfo.value.errors]


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("dmarc-policy", {"dmarc": {"policy": "rejectt"}}, ["mailstack:dmarc.policy: 'rejectt' is not one of none, quarantine, reject"]),
    ("dmarc-sp", {"dmarc": {"subdomainPolicy": "x"}}, ["mailstack:dmarc.subdomainPolicy: 'x' is not one of none, quarantine, reject"]),
    ("dmarc-pct-removed", {"dmarc": {"pct": 50}}, ["mailstack:dmarc.pct: was removed by RFC 9989 (DMARCbis) and is not published: t=y (test mode) replaces pct=0; any other percentage is no longer honoured: drop pct (mailstack:dmarc.testMode: true)"]),
    ("dmarc-test-mode", {"dmarc": {"testMode": "often"}}, ["mailstack:dmarc.testMode: 'often' is not true or false"]),
    ("dmarc-np", {"dmarc": {"nonexistentPolicy": "drop"}}, ["mailstack:dmarc.nonexistentPolicy: 'drop' is not one of none, quarantine, reject"]),
    ("dmarc-adkim", {"dmarc": {"adkim": "x"}}, ["mailstack:dmarc.adkim: 'x' is not one of r, s"]),
    ("dmarc-aspf", {"dmarc": {"aspf": "strict"}}, ["mailstack:dmarc.aspf: 'strict' is not one of r, s"]),
    ("dmarc-rua", {"dmarc": {"rua": ["dmarc@example.com"]}}, ["mailstack:dmarc.rua[0]: 'dmarc@example.com' is not a mailto: or https: report URI"]),
    ("dmarc-ruf", {"dmarc": {"ruf": ["mailto:ok@example.com", "ftp://x"]}}, ["mailstack:dmarc.ruf[1]: 'ftp://x' is not a mailto: or https: report URI"]),
    ("dmarc-fo", {"dmarc": {"fo": "2"}}, ["mailstack:dmarc.fo: '2' is not a ':'-list of 0, 1, d, s"]),
    ("dmarc-unknown", {"dmarc": {"polcy": "none"}}, ["mailstack:dmarc.polcy: unknown key; did you mean mailstack:dmarc.policy? (expected one of policy, subdomainPolicy, nonexistentPolicy, testMode, rua, ruf, adkim, aspf, pct, fo)"]),
    ("inbound-postmaster-address", {**ONPREM, "inbound": {"mode": "gateway", "postmaster": "ops"}}, ["mailstack:inbound.postmaster: 'ops' is not an e-mail address (local@domain)"]),
    ("inbound-postmaster-mode", {"inbound": {"mode": "odoo-mx", "subdomain": "mail", "postmaster": "ops@example.org"}}, [
        "mailstack:inbound.postmaster: only applies when the gateways receive the mail (mode gateway, or forward through the gateways): "
        "elsewhere the mailbox provider routes postmaster@ and abuse@"]),
    ("checks-blocklists-kind", {"checks": {"blocklists": "zen.spamhaus.org"}}, ["mailstack:checks.blocklists: must be a list of DNS blocklist zones (e.g. [zen.spamhaus.org]), [] for none"]),
    ("checks-blocklists-name", {"checks": {"blocklists": ["zen spamhaus"]}}, ["mailstack:checks.blocklists[0]: 'zen spamhaus' is not a fully qualified host name"]),
    ("unknown-top", {"domian": "x"}, None),  # message checked separately (lists known keys)
    ("sender-name", {"outbound": ["odooo"]}, ["mailstack:outbound[0].type: 'odooo' is not one of odoo, gateway, mailjet, google, microsoft"]),
    ("sender-type", {"outbound": [{"type": "sendgrid"}]}, ["mailstack:outbound[0].type: 'sendgrid' is not one of odoo, gateway, mailjet, google, microsoft"]),
    ("sender-field", {"outbound": [{"type": "google", "tenant": "x"}]}, ["mailstack:outbound[0].tenant: unknown key (expected one of type, dkimKey, dkimSelector)"]),
    ("sender-twice", {"outbound": ["odoo", "odoo"]}, ["mailstack:outbound[1]: sender odoo is declared twice"]),
    ("sender-none", {"outbound": [None]}, ["mailstack:outbound[0]: must be a sender name (odoo, gateway, mailjet, google, microsoft) or a mapping"]),
    ("outbound-not-list", {"outbound": "odoo"}, ["mailstack:outbound: must be a list"]),
    ("microsoft-tenant", {"outbound": [{"type": "microsoft"}]}, ["mailstack:outbound[0].tenant: is required for microsoft (the <tenant>.onmicrosoft.com prefix)"]),
    ("microsoft-bad-tenant", {"outbound": [{"type": "microsoft", "tenant": "con toso"}]}, ["mailstack:outbound[0].tenant: 'con toso' is not a single DNS label (letters, digits, hyphens)"]),
    ("dkim-key", {"outbound": [{"type": "mailjet", "dkimKey": "not base64!"}]}, ["mailstack:outbound[0].dkimKey: the DKIM public key is not valid base64"]),
    ("spf-term", {"outbound": [{"spf": "ip4:192.0.2"}]}, ["mailstack:outbound[0].spf: 'ip4:192.0.2': '192.0.2' is not an ip4 address or network"]),
    ("spf-all", {"outbound": [{"spf": "+all"}]}, ["mailstack:outbound[0].spf: '+all': the all term is set once, by mailstack:spf.all"]),
    ("spf-redirect", {"outbound": [{"spf": "redirect=_spf.example.net"}]}, ["mailstack:outbound[0].spf: 'redirect=_spf.example.net': redirect cannot be merged with other senders"]),
    ("spf-version", {"outbound": [{"spf": "v=spf1 mx"}]}, ["mailstack:outbound[0].spf: 'v=spf1': give the terms only; mailstack writes v=spf1"]),
    ("spf-budget", {"outbound": ["odoo", {"spf": ELEVEN}]}, [
        "mailstack:outbound: example.com, mail.example.com: SPF needs 11 DNS lookups at its top level, "
        "over the limit of 10 (RFC 7208 §4.6.4)"
    ]),
    ("gateway-selector-odoo", {"outbound": ["odoo", "gateway"], "gateways": [{"hostname": "mx1.example.com", "ipv4": "192.0.2.1"}],
                               "gateway": {"mailgate": {"url": "https://db.odoo.com", "database": "db"}}, "dkim": {"selector": "odoo"}}, [
        "mailstack:dkim.selector: odoo._domainkey.example.com has a CNAME beside other records (CNAME, TXT); RFC 1034 §3.6.2 forbids it",
        "mailstack:dkim.selector: odoo._domainkey.mail.example.com has a CNAME beside other records (CNAME, TXT); RFC 1034 §3.6.2 forbids it",
    ]),
    ("alias-at-cname", {"aliasDomains": ["mail.example.com"], "inbound": {"mode": "odoo-mx", "subdomain": "mail", "record": "cname"}}, [
        "mailstack:inbound: mail.example.com has a CNAME beside other records (CNAME, TXT); RFC 1034 §3.6.2 forbids it"
    ]),
    ("spf-all-option", {"spf": {"all": "?all"}}, ["mailstack:spf.all: '?all' is not one of ~all, -all"]),
    ("domain-space", {"domain": "exa mple.com"}, ["mailstack:domain: 'exa mple.com': label 'exa mple' is not a valid host-name label"]),
    ("domain-single", {"domain": "localhost"}, ["mailstack:domain: 'localhost' is not a fully qualified host name"]),
    ("domain-ip", {"domain": "192.0.2.1"}, ["mailstack:domain: '192.0.2.1' is an IP address, not a host name"]),
    ("domain-missing", {"domain": None}, ["mailstack:domain: is required (the mail domain, e.g. example.com)"]),
    ("alias-dup", {"aliasDomains": ["b.example", "B.example."]}, ["mailstack:aliasDomains[1]: b.example is declared twice"]),
    ("alias-bad", {"aliasDomains": ["-x.example"]}, ["mailstack:aliasDomains[0]: '-x.example': label '-x' is not a valid host-name label"]),
    ("odoo-hosting", {"odoo": {"hosting": "cloud"}}, ["mailstack:odoo.hosting: 'cloud' is not one of online, sh, onpremise"]),
    ("odoo-missing", {"odoo": None}, ["mailstack:odoo: is required: {hosting: online|sh|onpremise, database: ...}"]),
    ("odoo-db", {"odoo": {"hosting": "online"}}, ["mailstack:odoo.database: is required for hosting online (the <db> of <db>.odoo.com)"]),
    ("odoo-db-saas", {"odoo": {"hosting": "online", "database": "my_db"}}, ["mailstack:odoo.database: 'my_db' is not a single DNS label (letters, digits, hyphens)"]),
    ("odoo-db-onprem", {"odoo": {"hosting": "onpremise", "url": "https://o.example.com", "database": "prod db"}, "outbound": [], "inbound": {"mode": "none"}}, [
        "mailstack:odoo.database: 'prod db' is not an Odoo database name (letters, digits, '_', '.', '-')"
    ]),
    ("odoo-url", {"odoo": {"hosting": "online", "database": "db", "url": "odoo.example.com"}}, ["mailstack:odoo.url: 'odoo.example.com' is not an http:// or https:// URL"]),
    ("odoo-sender-onprem", {"odoo": {"hosting": "onpremise", "url": "https://o.example.com"}, "inbound": {"mode": "none"}}, [
        "mailstack:outbound[0]: sender odoo (Odoo's mail servers) needs odoo.hosting online or sh; on premise send through a gateway or a provider"
    ]),
    ("inbound-mode", {"inbound": {"mode": "pop3"}}, ["mailstack:inbound.mode: 'pop3' is not one of odoo-mx, gateway, forward, imap, none"]),
    ("inbound-subdomain-missing", {"inbound": {"mode": "odoo-mx"}}, [
        "mailstack:inbound.subdomain: is required for odoo-mx: Odoo's inbound mail must use a dedicated subdomain, never the root"
    ]),
    ("inbound-subdomain-bad", {"inbound": {"mode": "odoo-mx", "subdomain": "in.box"}}, [
        "mailstack:inbound.subdomain: 'in.box' is not a single DNS label (letters, digits, hyphens)"
    ]),
    ("inbound-record", {"inbound": {"mode": "odoo-mx", "subdomain": "mail", "record": "a"}}, ["mailstack:inbound.record: 'a' is not one of mx, cname"]),
    ("inbound-gateway-none", {"inbound": {"mode": "gateway"}}, ["mailstack:inbound.mode: gateway needs at least one entry in mailstack:gateways"]),
    ("inbound-mx-ip", {"inbound": {"mode": "forward", "mx": [{"host": "192.0.2.1"}]}}, ["mailstack:inbound.mx[0].host: '192.0.2.1' is an IP address, not a host name"]),
    ("inbound-mx-mode", {"inbound": {"mode": "odoo-mx", "subdomain": "mail", "mx": "google"}}, ["mailstack:inbound.mx: only applies to modes forward and imap, not odoo-mx"]),
    ("dkim-selector", {"dkim": {"selector": "my selector"}}, ["mailstack:dkim.selector: 'my selector' is not a single DNS label (letters, digits, hyphens)"]),
    ("dkim-bits-small", {"dkim": {"bits": 512}}, ["mailstack:dkim.bits: 512 is not between 1024 and 4096"]),
    ("dkim-bits-odd", {"dkim": {"bits": 2000}}, ["mailstack:dkim.bits: 2000 is not one of 1024, 2048, 3072, 4096 (RFC 8301: at least 1024)"]),
    ("dns-provider", {"dns": {"provider": "route53"}}, ["mailstack:dns.provider: 'route53' is not one of cloudflare, rfc2136"]),
    ("dns-ttl", {"dns": {"ttl": 5}}, ["mailstack:dns.ttl: 5 is too short: use 1 (Cloudflare automatic) or 30 to 86400"]),
    ("dns-zone", {"dns": {"zone": "example.org"}}, ["mailstack:dns.zone: example.com is not inside zone example.org"]),
    ("dns-rfc2136", {"dns": {"provider": "rfc2136"}}, [
        "mailstack:dns.server: is required for provider rfc2136 (the primary's address)",
        "mailstack:dns.tsigKeyName: is required for provider rfc2136",
    ]),
    ("dns-rfc2136-ttl", {"dns": {"provider": "rfc2136", "ttl": 1, "server": "127.0.0.1", "tsigKeyName": "k"}}, [
        "mailstack:dns.ttl: 1 means 'automatic' on Cloudflare only; give seconds for rfc2136"
    ]),
    ("dns-cloudflare-server", {"dns": {"server": "127.0.0.1"}}, ["mailstack:dns.server: only applies to provider rfc2136"]),
    ("mta-sts-mode", {"mtaSts": {"mode": "on"}, "inbound": {"mode": "forward", "mx": "google"}}, ["mailstack:mtaSts.mode: 'on' is not one of enforce, testing, none"]),
    ("mta-sts-age", {"mtaSts": {"maxAge": 31557601}, "inbound": {"mode": "forward", "mx": "google"}}, ["mailstack:mtaSts.maxAge: 31557601 is not between 86400 and 31557600"]),
    ("mta-sts-no-mx", {"mtaSts": True, "inbound": {"mode": "none"}}, ["mailstack:mtaSts: MTA-STS needs an MX: inbound.mode is none"]),
    ("mta-sts-subdomain", {"mtaSts": {"mode": "enforce"}}, [
        "mailstack:mtaSts: MTA-STS is published for the domain itself, but inbound mail uses the subdomain mail; remove mtaSts or inbound.subdomain"
    ]),
    ("tls-rpt-empty", {"tlsRpt": {"rua": []}}, ["mailstack:tlsRpt.rua: needs at least one mailto: or https: URI"]),
]


@pytest.mark.parametrize(("overrides", "expected"), [(o, e) for _, o, e in CASES if e is not None], ids=[i for i, _, e in CASES if e is not None])
def test_config_error_names_the_key(overrides: dict[str, Any], expected: list[str]) -> None:
    assert errors_of({**BASE, **overrides}) == expected


GATEWAY_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("ipv4", {"ipv4": "300.1.1.1"}, "mailstack:gateways[0].ipv4: '300.1.1.1' is not an IPv4 address"),
    ("ipv4-missing", {"ipv4": None}, "mailstack:gateways[0].ipv4: is required: a gateway needs an address for SPF and its MX"),
    ("ipv6", {"ipv6": "2001:db8::zz"}, "mailstack:gateways[0].ipv6: '2001:db8::zz' is not an IPv6 address"),
    ("priority-high", {"priority": 65536}, "mailstack:gateways[0].priority: 65536 is not between 0 and 65535"),
    ("priority-negative", {"priority": -1}, "mailstack:gateways[0].priority: -1 is not between 0 and 65535"),
    ("priority-text", {"priority": "first"}, "mailstack:gateways[0].priority: 'first' is not an integer"),
    ("hostname", {"hostname": "mx_1.example.net"}, "mailstack:gateways[0].hostname: 'mx_1.example.net': label 'mx_1' is not a valid host-name label"),
    ("hostname-ip", {"hostname": "192.0.2.10"}, "mailstack:gateways[0].hostname: '192.0.2.10' is an IP address, not a host name"),
    ("unknown", {"ipv5": "x"}, "mailstack:gateways[0].ipv5: unknown key; did you mean mailstack:gateways[0].ipv6? (expected one of hostname, ipv4, ipv6, priority, ssh)"),
    ("ssh-host-key-type", {"ssh": {"hostKey": "ssh-dss AAAAB3NzaC1kc3M="}},
     "mailstack:gateways[0].ssh.hostKey: 'ssh-dss AAAAB3NzaC1kc3M=' is not an SSH public key of type ssh-ed25519, "
     "ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa"),
    ("ssh-host-key-data", {"ssh": {"hostKey": "ssh-ed25519 AAAA"}},
     "mailstack:gateways[0].ssh.hostKey: 'ssh-ed25519 AAAA'...: not a valid ssh-ed25519 public key"),
    ("ssh-host-key-newline", {"ssh": {"hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOcKJUNUTddQpyK9d4LbK+fW+JXMpCEeYewqQxses4Ti\nx"}},
     "mailstack:gateways[0].ssh.hostKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5...K9d4LbK+fW+JXMpCEeYewqQxses4Ti\\nx' "
     "contains the control character U+000A at position 80"),
]


@pytest.mark.parametrize(("fields", "expected"), [(f, e) for _, f, e in GATEWAY_CASES], ids=[i for i, _, _ in GATEWAY_CASES])
def test_gateway_errors(fields: dict[str, Any], expected: str) -> None:
    gateway = {"hostname": "mx1.example.net", "ipv4": "192.0.2.10", **fields}
    gateway = {k: v for k, v in gateway.items() if v is not None}
    assert expected in errors_of({**ONPREM, "gateways": [gateway]})


def test_gateway_host_key_is_kept_without_its_comment() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOcKJUNUTddQpyK9d4LbK+fW+JXMpCEeYewqQxses4Ti"
    gateway = {"hostname": "mx1.example.net", "ipv4": "192.0.2.10", "ssh": {"hostKey": f"{key} root@mx1"}}
    assert from_config({**ONPREM, "gateways": [gateway]}).gateways[0].ssh.host_key == key
    assert from_config(ONPREM).gateways[0].ssh.host_key is None


def test_gateway_declared_twice() -> None:
    gateways = [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}, {"hostname": "MX1.example.net", "ipv4": "192.0.2.11"}]
    assert "mailstack:gateways[1].hostname: mx1.example.net is declared twice" in errors_of({**ONPREM, "gateways": gateways})


def test_unknown_top_level_key_lists_known_keys() -> None:
    [message] = errors_of({**BASE, "domian": "x"})
    assert message.startswith("mailstack:domian: unknown key; did you mean mailstack:domain? (known keys: ")
    assert "domain" in message and "outbound" in message and "dmarc" in message


def test_every_problem_reported_at_once() -> None:
    messages = errors_of({**BASE, "dmarc": {"policy": "x", "pct": 200}, "dkim": {"bits": 100}, "spf": {"all": "+all"}})
    assert messages == [
        "mailstack:dkim.bits: 100 is not between 1024 and 4096",
        "mailstack:spf.all: '+all' is not one of ~all, -all",
        "mailstack:dmarc.policy: 'x' is not one of none, quarantine, reject",
        "mailstack:dmarc.pct: was removed by RFC 9989 (DMARCbis) and is not published: t=y (test mode) replaces pct=0; any other percentage is no longer honoured: drop pct (mailstack:dmarc.testMode: true)",
    ]


def test_third_party_key_under_1024_bits_refused() -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.RSAPublicNumbers(65537, (1 << 767) | 0xF1).public_key()
    der = small.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = base64.b64encode(der).decode()
    assert errors_of({**BASE, "outbound": ["odoo", {"type": "google", "dkimKey": key}]}) == [
        "mailstack:outbound[1].dkimKey: RSA key of 768 bits is under the minimum of 1024 (RFC 8301)"
    ]


def test_third_party_key_accepts_record_form() -> None:
    sender = stackfile.load(project.stack_path("odoo-sh")).sender(SenderKind.MAILJET)
    assert sender is not None and sender.dkim_key
    stack = from_config({**BASE, "outbound": [{"type": "mailjet", "dkimKey": f"v=DKIM1; k=rsa; p={sender.dkim_key}"}]})
    found = stack.sender(SenderKind.MAILJET)
    assert found is not None and found.dkim_key == sender.dkim_key and found.dkim_selector is None


def test_defaults() -> None:
    stack = from_config({"domain": "Example.COM.", "odoo": {"hosting": "online", "database": "db"}, "inbound": {"mode": "none"}})
    assert stack.domain == "example.com"
    assert stack.odoo.hosting is Hosting.ONLINE and stack.outbound == ()
    assert stack.inbound.mode is InboundMode.NONE
    assert (stack.dkim.selector, stack.dkim.bits) == ("mailstack", 2048)
    assert stack.spf.all == "~all"
    assert (stack.dmarc.policy, stack.dmarc.adkim, stack.dmarc.aspf, stack.dmarc.testing) == ("none", "r", "r", False)
    assert (stack.dns.provider, stack.dns.zone, stack.dns.ttl) == ("cloudflare", "example.com", 3600)
    assert stack.mta_sts is None and stack.tls_rpt is None


def test_inbound_is_required_no_silent_null_mx() -> None:
    """A forgotten inbound key must not publish a null MX (RFC 7505) and stop the domain's mail."""
    without = {k: v for k, v in BASE.items() if k != "inbound"}
    with pytest.raises(ConfigErrors) as excinfo:
        from_config(without)
    assert str(excinfo.value).startswith("mailstack:inbound: is required: {mode: odoo-mx|gateway|forward|imap|none, ...}")
    with pytest.raises(ConfigErrors, match=r"^mailstack:inbound.mode: is required"):
        from_config({**BASE, "inbound": {"subdomain": "mail"}})


def test_onpremise_database_keeps_odoo_names() -> None:
    stack = from_config({**ONPREM, "odoo": {"hosting": "onpremise", "url": "https://o.example.net", "database": "Odoo_Prod.17"}})
    assert stack.odoo.database == "Odoo_Prod.17"


def test_engine_strings_are_coerced() -> None:
    """The Pulumi engine may hand numbers and booleans over as strings."""
    stack = from_config({**BASE, "dmarc": {"testMode": "true"}, "dns": {"ttl": "300", "allowDelete": "true"}})
    assert stack.dmarc.testing is True and stack.dns.ttl == 300 and stack.dns.allow_delete is True


def test_secret_and_extension_keys_are_known() -> None:
    stack = from_config({**BASE, "tsigSecret": stackfile.Secret("tsigSecret"), "lab": {}})
    assert stack.domain == "example.com"


def test_format_path() -> None:
    assert format_path(("gateways", 1, "ipv4")) == "mailstack:gateways[1].ipv4"
    assert format_path(()) == "mailstack"
    assert str(ConfigError(("dmarc", "policy"), "bad")) == "mailstack:dmarc.policy: bad"


def test_config_errors_are_mailstack_errors() -> None:
    assert issubclass(ConfigErrors, MailstackError)


def test_every_shipped_stack_is_valid() -> None:
    assert project.all_stacks(), "stacks/ must hold example stacks"
    for path in project.all_stacks():
        stackfile.load(path)


def test_stackfile_reading(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(
        "config:\n  mailstack:domain: example.com\n  mailstack:tsigSecret:\n    secure: AAAB\n  other:key: 1\n"
    )
    raw = stackfile.read_namespace(path)
    assert raw == {"domain": "example.com", "tsigSecret": stackfile.Secret("tsigSecret")}
    with pytest.raises(MailstackError, match="no such stack file"):
        stackfile.read_namespace(tmp_path / "missing.yaml")
    path.write_text("config: [\n")
    with pytest.raises(MailstackError, match="not valid YAML"):
        stackfile.read_namespace(path)
    path.write_text("- a\n")
    with pytest.raises(MailstackError, match="is a mapping"):
        stackfile.read_namespace(path)


# --- docs/configuration.md stays true to the code ------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _allowed_keys(declaration: dict[str, Any], path: str) -> list[str]:
    """The keys the validator accepts at a path, read from its unknown-key message."""
    messages = [m for m in errors_of(declaration) if m.startswith(f"{path}.zzz: unknown key")]
    assert len(messages) == 1, messages
    listed = messages[0].split("(expected one of ", 1)[1].rstrip(")")
    return [k.strip() for k in listed.split(",")]


def test_documentation_names_every_key() -> None:
    doc = DOC.read_text(encoding="utf-8")
    [top] = errors_of({**BASE, "zzz": 1})
    top_keys = top.split("(known keys: ", 1)[1].rstrip(")").split(", ")
    keys = {f"`{k}`" for k in top_keys}
    probes: list[tuple[dict[str, Any], str]] = [
        ({**BASE, "odoo": {"hosting": "online", "database": "db", "zzz": 1}}, "mailstack:odoo"),
        ({**BASE, "inbound": {"mode": "odoo-mx", "subdomain": "mail", "zzz": 1}}, "mailstack:inbound"),
        ({**BASE, "dkim": {"zzz": 1}}, "mailstack:dkim"),
        ({**BASE, "spf": {"zzz": 1}}, "mailstack:spf"),
        ({**BASE, "dmarc": {"zzz": 1}}, "mailstack:dmarc"),
        ({**BASE, "mtaSts": {"zzz": 1}}, "mailstack:mtaSts"),
        ({**BASE, "tlsRpt": {"rua": ["mailto:t@example.com"], "zzz": 1}}, "mailstack:tlsRpt"),
        ({**BASE, "dns": {"zzz": 1}}, "mailstack:dns"),
        ({**ONPREM, "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.1", "zzz": 1}]}, "mailstack:gateways[0]"),
        ({**ONPREM, "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.1", "ssh": {"zzz": 1}}]}, "mailstack:gateways[0].ssh"),
        ({**BASE, "inbound": {"mode": "forward", "mx": [{"host": "mx.example.org", "zzz": 1}]}}, "mailstack:inbound.mx[0]"),
        ({**BASE, "outbound": [{"type": "google", "zzz": 1}]}, "mailstack:outbound[0]"),
        ({**BASE, "outbound": [{"type": "microsoft", "tenant": "t", "zzz": 1}]}, "mailstack:outbound[0]"),
    ]
    for declaration, path in probes:
        keys |= {f"`{k}`" for k in _allowed_keys(declaration, path)}
    missing = sorted(k for k in keys if k not in doc)
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_documented_error_examples_are_real() -> None:
    """A sample of the documented messages, produced by the validator word for word."""
    doc = DOC.read_text(encoding="utf-8")
    for case_id, overrides, expected in CASES:
        if expected is None:
            continue
        for message in expected:
            if case_id in {"dmarc-policy", "dkim-bits-small", "spf-budget", "inbound-subdomain-missing", "dns-ttl", "alias-at-cname"}:
                assert message.replace("\n", " ") in " ".join(doc.split()), message
