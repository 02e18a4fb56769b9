"""The validation layer piece by piece: string kinds, the reader's bounds, the YAML
loader, namespace typos from the Pulumi engine, record-size limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailstack.config import kinds, stackfile
from mailstack.config.reader import MAX_ERRORS, ConfigReader
from mailstack.config.stack import from_config
from mailstack.core.errors import ConfigErrors, MailstackError, format_path, quote
from mailstack.rules import limits

ONPREM: dict[str, Any] = {
    "domain": "example.net",
    "odoo": {"hosting": "onpremise", "url": "https://odoo.example.net", "database": "prod"},
    "outbound": ["gateway"],
    "inbound": {"mode": "gateway"},
    "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}],
}


def errors_of(declaration: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigErrors) as excinfo:
        from_config(declaration)
    return [str(e) for e in excinfo.value.errors]


# -- kinds -----------------------------------------------------------------------------

@pytest.mark.parametrize("char", ["\x00", "\x07", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f", "\u200b", "\u2028", "\u2029", "\u202e", "\ufeff"])
def test_text_refuses_every_control_and_invisible_character(char: str) -> None:
    with pytest.raises(ValueError, match=f"U\\+{ord(char):04X}"):
        kinds.text(f"a{char}b")


def test_text_bounds_length_and_type() -> None:
    assert kinds.text("  x  ") == "x"
    with pytest.raises(ValueError, match="over the limit of 4096"):
        kinds.text("x" * 4097)
    with pytest.raises(ValueError, match="must be a string, not a number"):
        kinds.text(5)
    with pytest.raises(ValueError, match="non-empty"):
        kinds.text("   ")


@pytest.mark.parametrize(
    "path", ["/etc/ssl/certs/ssl-cert-snakeoil.pem", "/etc/letsencrypt/live/mx1.example.net/fullchain.pem", "/var/lib/x_y+z-1.key"]
)
def test_absolute_paths_accepted(path: str) -> None:
    assert kinds.absolute_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["relative", "/a/../b", "/a/./b", "/a//b", "/a/", "/a b", "/a;b", "/a$b", "/a`b`", "/a'b", '/a"b', "/a:b", "/a,b", "/a=b",
     "/a#b", "/a%b", "/a*b", "/a\\b", "/é", "/" + "a" * 256],
)
def test_absolute_paths_refused(path: str) -> None:
    with pytest.raises(ValueError):
        kinds.absolute_path(path)


@pytest.mark.parametrize(
    ("value", "normalised"),
    [("https://odoo.example.com", "https://odoo.example.com"), ("http://127.0.40.20:8069/", "http://127.0.40.20:8069"),
     ("https://odoo.example.com/odoo", "https://odoo.example.com/odoo"), ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443")],
)
def test_urls_accepted(value: str, normalised: str) -> None:
    assert kinds.url(("http", "https"))(value) == normalised


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("odoo.example.com", "is not an http:// or https:// URL"),
        ("ftp://odoo.example.com", "is not an http:// or https:// URL"),
        ("https://admin:pw@odoo.example.com", "carries credentials"),
        ("https://admin@odoo.example.com", "carries credentials"),
        ("https://odoo.example.com/?db=x", "without ?query or #fragment"),
        ("https://odoo.example.com/#x", "without ?query or #fragment"),
        ("https://odoo.example.com:99999", "is not an http:// or https:// URL"),
        ("https://exa mple.com", "is not a host name or IP address"),
        ("https://odoo.example.com/a b", "the path may hold"),
        ("https://odoo.example.com/a;b", "the path may hold"),
        ("https://[fe80::1%25eth0]/", "is not a host name or IP address"),
    ],
)
def test_urls_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace("(", r"\(")):
        kinds.url(("http", "https"))(value)


def test_local_parts_and_addresses() -> None:
    assert kinds.local_part("First.Last+tag") == "first.last+tag"
    for bad in (".a", "a.", "a..b", "é", "a b", "a@b", "x" * 65, "a;b"):
        with pytest.raises(ValueError):
            kinds.local_part(bad)
    assert kinds.email_address("Reports@Example.NET") == "reports@example.net"
    for bad in ("reports", "a@b", "a@@example.net", "@example.net"):
        with pytest.raises(ValueError):
            kinds.email_address(bad)


def test_logins_users_and_ids() -> None:
    assert kinds.login_name("mailgate@example.com") == "mailgate@example.com"
    assert kinds.sasl_user("odoo") == "odoo"
    assert kinds.unix_user("deploy") == "deploy"
    for kind, bad in [(kinds.login_name, "a b"), (kinds.login_name, "a;b"), (kinds.sasl_user, "odoo@x"), (kinds.sasl_user, "a:b"),
                      (kinds.unix_user, "Root"), (kinds.unix_user, "a;b"), (kinds.check_id, "spf size"), (kinds.database_name, "prod\n")]:
        with pytest.raises(ValueError):
            kind(bad)


@pytest.mark.parametrize("name", ["online", "multi-company", "onpremise-m365", "dev.eu_1"])
def test_stack_names(name: str) -> None:
    assert kinds.stack_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", ".hidden", "a..b", "x" * 101, ""])
def test_stack_names_refused(name: str) -> None:
    with pytest.raises(ValueError):
        kinds.stack_name(name)


def test_ip_kinds_refuse_scopes() -> None:
    assert kinds.ip_network("10.0.0.0/24") == "10.0.0.0/24"
    for bad in ("fe80::1%eth0", "2001:db8::1%x\ny", "10.0.0.1/24", "10.0.0.0/33"):
        with pytest.raises(ValueError):
            kinds.ip_network(bad)
    with pytest.raises(ValueError, match="%scope"):
        kinds.ipv6("fe80::1%eth0")


# -- the reader ------------------------------------------------------------------------

def test_errors_are_capped_and_counted() -> None:
    reader = ConfigReader()
    for index in range(MAX_ERRORS + 7):
        reader.fail(("x", index), "bad")
    assert len(reader.errors) == MAX_ERRORS + 1
    assert str(reader.errors[-1]) == f"mailstack: ... and 7 more errors (only the first {MAX_ERRORS} are shown)"
    assert reader.error_count == MAX_ERRORS + 7


def test_quote_and_paths_are_bounded() -> None:
    assert quote("rejectt") == "'rejectt'"
    assert len(quote("x" * 10**6)) <= 80 and len(quote(list(range(10**5)))) <= 80
    assert format_path(("dmarc", "a\nb")) == "mailstack:dmarc['a\\nb']"
    assert len(format_path(("dmarc", "k" * 10**5))) < 100


def test_an_integer_of_5000_digits_is_refused_cleanly() -> None:
    [message] = errors_of({**ONPREM, "dns": {"ttl": 10**300}})
    assert message == "mailstack:dns.ttl: a number of more than 20 digits is not between 1 and 86400"


def test_follow_on_errors_are_not_repeated() -> None:
    """One bad value, one message: a refused odoo.url is not also "required"."""
    messages = errors_of({**ONPREM, "odoo": {**ONPREM["odoo"], "url": "https://odoo.example.net\nx"}})
    assert len(messages) == 1 and messages[0].startswith("mailstack:odoo.url: ")
    messages = errors_of({**ONPREM, "gateways": [{"hostname": "mx1\n.example.net", "ipv4": "192.0.2.10"}]})
    assert len(messages) == 1 and messages[0].startswith("mailstack:gateways[0].hostname: ")
    messages = errors_of({**ONPREM, "gateway": {"tls": {"cert": "/a b", "key": "/etc/k"}}})
    assert len(messages) == 1 and messages[0].startswith("mailstack:gateway.tls.cert: ")


# -- limits ----------------------------------------------------------------------------

def test_limits_name_the_key_and_the_limit() -> None:
    assert errors_of({**ONPREM, "aliasDomains": [f"b{i}.example" for i in range(2001)]}) == [
        f"mailstack:aliasDomains: 2001 alias domains, over the limit of 2000 ({limits.ALIAS_DOMAINS.reason})"
    ]
    assert errors_of({**ONPREM, "gateways": [{"hostname": f"mx{i}.example.net", "ipv4": "192.0.2.10"} for i in range(11)]})[0].startswith(
        "mailstack:gateways: 11 gateways, over the limit of 10"
    )
    assert errors_of({**ONPREM, "inbound": {"mode": "gateway", "aliases": [f"a{i}" for i in range(501)]}})[0].startswith(
        "mailstack:inbound.aliases: 501 aliases, over the limit of 500"
    )
    assert errors_of({**ONPREM, "tlsRpt": {"rua": [f"mailto:t{i}@example.net" for i in range(6)]}})[0].startswith(
        "mailstack:tlsRpt.rua: 6 report URIs, over the limit of 5"
    )


def test_2000_alias_domains_are_accepted() -> None:
    stack = from_config({**ONPREM, "aliasDomains": [f"b{i}.example" for i in range(2000)]})
    assert len(stack.alias_domains) == 2000


def test_a_selector_too_long_for_the_longest_domain_is_refused() -> None:
    domain = ".".join(["d" * 60] * 3) + ".example"  # 191 characters
    [message] = errors_of({**ONPREM, "domain": "example.net", "aliasDomains": [domain], "dkim": {"selector": "s" * 63}})
    assert message == (
        f"mailstack:dkim.selector: {63 + 12 + len(domain)} characters in the DKIM key name <selector>._domainkey.{domain}, "
        "over the limit of 253 (RFC 1035 §2.3.4: a DNS name is at most 255 octets on the wire)"
    )


def test_txt_rdata_size() -> None:
    assert limits.txt_rdata_size("x" * 255) == 256 and limits.txt_rdata_size("x" * 256) == 258
    assert limits.txt_problem("x" * 4079, "DMARC") is None
    assert limits.txt_problem("x" * 4081, "DMARC") is not None


def test_a_third_party_key_over_4096_bits_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    # Any odd 8,192-bit modulus makes a public key (nothing is signed with it).
    key = rsa.RSAPublicNumbers(65537, (1 << 8191) | 0xFFFF_FFFF_FFFF_FFFF).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    [message] = errors_of({**ONPREM, "outbound": ["gateway", {"type": "mailjet", "dkimKey": pem}]})
    assert message.startswith("mailstack:outbound[1].dkimKey: RSA key of 8192 bits is over 4096")


# -- the YAML loader -------------------------------------------------------------------

#: Both readers: libyaml's parser (PyYAML's wheels have it) and PyYAML's own.
LOADERS = sorted({stackfile._PythonStackLoader, stackfile.StackLoader}, key=lambda c: c.__name__)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("depth", [21, 600, 100000])
def test_deep_flow_nesting_is_refused_at_once(depth: int, loader: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stackfile, "StackLoader", loader)
    with pytest.raises(MailstackError, match="line 2: (nested more than 20 levels deep|exceeded maximum nesting depth)"):
        stackfile.parse("config:\n  x: " + "[" * depth + "]" * depth + "\n", "x")


def test_libyaml_is_used_where_pyyaml_has_it() -> None:
    import yaml

    assert (stackfile.StackLoader is not stackfile._PythonStackLoader) == bool(yaml.__with_libyaml__)
    assert stackfile.parse("config:\n  a: {b: [1, 2]}\n  c: yes\n", "x") == {"config": {"a": {"b": [1, 2]}, "c": True}}

@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("config:\n  <<: {mailstack:domain: x.example}\n", "line 2: merge key '<<' refused"),
        ("config:\n  mailstack:domain: &d example.org\n", "line 2: anchor &d refused"),
        ("config: {[1, 2]: x}\n", "line 1: a key must be a string, not [1, 2]"),
        ("config:\n  mailstack:dkim:\n    bits: " + "9" * 5000 + "\n", "a value cannot be read"),
        ("config:\n  mailstack:domain: !!python/object:os.system x\n", "not valid YAML"),
        ("config: [\n", "not valid YAML: line 2"),
        ("config:\n  a: 1\n  a: 2\n", "line 3: duplicate key 'a' (first at line 2): keep one"),
        ("config:\n  1: x\n  1: y\n", "line 3: duplicate key 1"),
        ("- a\n", "a stack file is a mapping with a 'config:' key"),
        ("", "empty: a stack file holds its settings under 'config:'"),
        ("\x00", "not valid YAML"),
    ],
)
@pytest.mark.parametrize("loader", LOADERS)
def test_yaml_problems_name_the_file_and_line(text: str, message: str, loader: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stackfile, "StackLoader", loader)
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(text)
    with pytest.raises(MailstackError) as excinfo:
        stackfile.read_namespace(path)
    assert str(excinfo.value).startswith(f"{path}: ") and message in str(excinfo.value), str(excinfo.value)
    assert len(str(excinfo.value)) < 400


def test_a_file_over_256_kb_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.big.yaml"
    path.write_text("config:\n  x: '" + "a" * (256 * 1024) + "'\n")
    with pytest.raises(MailstackError, match="larger than 256 KB"):
        stackfile.read_namespace(path)


def test_a_stack_name_is_checked_before_a_path_is_made() -> None:
    from tests import project

    with pytest.raises(MailstackError, match="is not a stack name"):
        project.PROJECT.stack_path("../../etc/passwd")


def test_the_engine_path_reports_namespace_typos() -> None:
    """``pulumi up`` reads the namespace from the engine: a near-miss there is refused
    before the program registers anything (``pulumi.RunError``)."""
    import pulumi

    from tests.pulumi_harness import Mocks, config_string, run_program

    config = {f"mailstack:{k}": config_string(v) for k, v in ONPREM.items()}
    config["Mailstack:dmarc"] = '{"policy": "reject"}'
    mocks = Mocks()
    with pytest.raises(pulumi.RunError, match=r"Pulumi config: config key 'Mailstack:dmarc' .* did you mean mailstack:dmarc\?"):
        run_program(config=config, mocks=mocks)
    assert not [r for r in mocks.resources if r.custom]
    config.pop("Mailstack:dmarc")
    config["mailstack:odooPassword"] = "plain"
    with pytest.raises(pulumi.RunError, match=r"mailstack:odooPassword: is a secret given in plain text"):
        run_program(config=config, mocks=Mocks())
