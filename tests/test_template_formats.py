"""Every template field, hostile values in it, and the real parsers' verdict.

Model objects are built directly (bypassing the config layer, as a future key or a
model built in code would), each field of everything the templates read set in turn
to a hostile value. For each, rendering either refuses (``FormatError``, naming the
template field) or the real tools read exactly what was meant: ``postconf -n``,
``postconf -F``/``-P`` (master.cf), ``postmap -s`` (lookup tables), ``opendkim -e``
(opendkim.conf values), ``opendkim -Q`` (KeyTable, SigningTable), ``opendkim -n``, and
configparser as the mailgate and Odoo read INI files. "Exactly what was meant" is
checked against a baseline rendered with a harmless marker in that field: the tools'
view of the hostile rendering must be the baseline's view with the marker replaced by
the hostile value — the same parameters, the value landing where the marker did and
nowhere else, nothing added, nothing merged into a neighbour.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack import plan
from mailstack.config.stack import from_config
from mailstack.core.errors import MailstackError
from mailstack.gateway import formats, render
from mailstack.lab import binaries
from tests.servers import require_binary

#: Appended to a field's marker (so a value keeps its place in a sorted list) ...
SUFFIXES = [
    "\nsmtpd_relay_restrictions = permit", "\rx", "\x00x", "\u2028x", "\u202ex", " ", " x", "\tx",
    ",x", "#x", ":x", ";x", "$x", "${x}", "%x", "'x", '"x', "\\x", "{x}", "é", "/../x",
]
#: ... or put before it.
PREFIXES = [" ", "#", "$"]


def _base() -> Any:
    raw = {
        "domain": "zqdomain.example",
        "aliasDomains": ["zqalias.example"],
        "odoo": {"hosting": "onpremise", "url": "https://odoo.zqdomain.example", "database": "prod",
                 "bounce": "zqbounce", "catchall": "zqcatchall", "notifications": "zqnotify"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway", "aliases": ["zqsales"]},
        "gateways": [{"hostname": "zqhost.example", "ipv4": "192.0.2.10"}],
        "dkim": {"selector": "zqsel"},
        "gateway": {
            "odooAddresses": ["10.77.0.0/16"],
            "smtpAuth": {"user": "zquser"},
            "relayHost": "[zqrelay.example]:58731",
            "tls": {"cert": "/zq/cert.pem", "key": "/zq/key.pem", "required": True},
            "messageSizeLimit": 36700161,
            "rateLimits": {"connections": 60001, "messages": 60002, "recipients": 60003, "concurrency": 60004},
            "mailgate": {"url": "https://zqodoo.example", "database": "zqdb", "login": "zqlogin",
                         "passwordFile": "/zq/password", "timeout": 3547, "concurrency": 97,
                         # The pipe: its master.cf line holds the mailgate's argv and dir.
                         "delivery": "pipe"},
        },
    }
    return from_config(raw)


STACK = _base()
BASE_PLAN = plan.build(STACK)
#: Where every case is written (one directory, reused: the parsers' views name it).
ROOT = Path(tempfile.gettempdir()) / f"mailstack-formats-{os.getpid()}"
OUT = ROOT / "out"
#: The layout's directories are ``OUT``'s; a hostile directory value is made a link to
#: the real one, so OpenDKIM finds its tables wherever the value points.
DIRECTORIES = {"layout.opendkim_dir": "opendkim", "layout.mailstack_dir": "mailstack"}
LAYOUT = render.Layout(
    opendkim_dir=f"{ROOT}/zqdkimdir", mailstack_dir=f"{ROOT}/zqgatedir", maillog_file="/var/log/zqpostfix.log",
    opendkim_pidfile="/zq/opendkim.pid", opendkim_user="zqdkimuser", milter_host="127.0.0.77", milter_port=18777,
    smtp_service="127.0.0.78:25", submission_service="127.0.0.79:587", inet_protocols="ipv4",
    mailgate_user="zqmailgate", mailgate_command=("/zq/python3", "/zq/mailgate.py"), mailgate_recipient_limit=4712, sasldb_path="/zq/sasldb2",
)

Model = tuple[Any, Any, Any]  # (stack, settings, layout); the gateway is stack.gateways[0]


def _replace(obj: Any, path: str, value: Any) -> Any:
    """``obj`` with the field at dotted ``path`` (``tls.cert``, ``aliases.0``) replaced."""
    name, _, rest = path.partition(".")
    if isinstance(obj, tuple):
        index = int(name)
        return (*obj[:index], _replace(obj[index], rest, value) if rest else value, *obj[index + 1:])
    current = getattr(obj, name)
    return dataclasses.replace(obj, **{name: _replace(current, rest, value) if rest else value})


def _on(root: str, path: str) -> Callable[[Model, Any], Model]:
    def setter(model: Model, value: Any) -> Model:
        stack, settings, layout = model
        if root == "stack":
            return _replace(stack, path, value), settings, layout
        if root == "settings":
            return stack, _replace(settings, path, value), layout
        return stack, settings, _replace(layout, path, value)

    return setter


#: Every field a template reads, with the marker the baseline holds there.
FIELDS: dict[str, tuple[Callable[[Model, Any], Model], Any]] = {
    "stack.domain": (_on("stack", "domain"), "zqdomain.example"),
    "stack.alias_domains[0]": (_on("stack", "alias_domains.0"), "zqalias.example"),
    "stack.odoo.bounce": (_on("stack", "odoo.bounce"), "zqbounce"),
    "stack.odoo.catchall": (_on("stack", "odoo.catchall"), "zqcatchall"),
    "stack.odoo.notifications": (_on("stack", "odoo.notifications"), "zqnotify"),
    "stack.inbound.aliases[0]": (_on("stack", "inbound.aliases.0"), "zqsales"),
    "stack.dkim.selector": (_on("stack", "dkim.selector"), "zqsel"),
    "gateway.hostname": (_on("stack", "gateways.0.hostname"), "zqhost.example"),
    "settings.odoo_addresses[0]": (_on("settings", "odoo_addresses.0"), "10.77.0.0/16"),
    "settings.smtp_auth.user": (_on("settings", "smtp_auth.user"), "zquser"),
    "settings.relay_host.host": (_on("settings", "relay_host.host"), "zqrelay.example"),
    "settings.relay_host.port": (_on("settings", "relay_host.port"), 58731),
    "settings.tls.cert": (_on("settings", "tls.cert"), "/zq/cert.pem"),
    "settings.tls.key": (_on("settings", "tls.key"), "/zq/key.pem"),
    "settings.message_size_limit": (_on("settings", "message_size_limit"), 36700161),
    "settings.rate_limits.connections": (_on("settings", "rate_limits.connections"), 60001),
    "settings.rate_limits.messages": (_on("settings", "rate_limits.messages"), 60002),
    "settings.rate_limits.recipients": (_on("settings", "rate_limits.recipients"), 60003),
    "settings.rate_limits.concurrency": (_on("settings", "rate_limits.concurrency"), 60004),
    "settings.mailgate.url": (_on("settings", "mailgate.url"), "https://zqodoo.example"),
    "settings.mailgate.database": (_on("settings", "mailgate.database"), "zqdb"),
    "settings.mailgate.login": (_on("settings", "mailgate.login"), "zqlogin"),
    "settings.mailgate.password_file": (_on("settings", "mailgate.password_file"), "/zq/password"),
    "settings.mailgate.timeout": (_on("settings", "mailgate.timeout"), 3547),
    "settings.mailgate.concurrency": (_on("settings", "mailgate.concurrency"), 97),
    "layout.opendkim_dir": (_on("layout", "opendkim_dir"), f"{ROOT}/zqdkimdir"),
    "layout.mailstack_dir": (_on("layout", "mailstack_dir"), f"{ROOT}/zqgatedir"),
    "layout.maillog_file": (_on("layout", "maillog_file"), "/var/log/zqpostfix.log"),
    "layout.opendkim_pidfile": (_on("layout", "opendkim_pidfile"), "/zq/opendkim.pid"),
    "layout.opendkim_user": (_on("layout", "opendkim_user"), "zqdkimuser"),
    "layout.milter_host": (_on("layout", "milter_host"), "127.0.0.77"),
    "layout.milter_port": (_on("layout", "milter_port"), 18777),
    "layout.smtp_service": (_on("layout", "smtp_service"), "127.0.0.78:25"),
    "layout.submission_service": (_on("layout", "submission_service"), "127.0.0.79:587"),
    "layout.inet_protocols": (_on("layout", "inet_protocols"), "ipv4"),
    "layout.mailgate_user": (_on("layout", "mailgate_user"), "zqmailgate"),
    "layout.mailgate_command[0]": (_on("layout", "mailgate_command.0"), "/zq/python3"),
    "layout.mailgate_command[1]": (_on("layout", "mailgate_command.1"), "/zq/mailgate.py"),
    "layout.mailgate_recipient_limit": (_on("layout", "mailgate_recipient_limit"), 4712),
    "layout.sasldb_path": (_on("layout", "sasldb_path"), "/zq/sasldb2"),
}


def rendered(model: Model, pem: str) -> dict[str, render.RenderedFile]:
    """The files of a model built directly: the plan's derived names follow the
    stack's domains (as ``plan.build`` derives them), the rest is the baseline plan."""
    stack, settings, layout = model
    base = BASE_PLAN
    domains = stack.domains
    sending = {domain: (domain,) for domain in domains}
    planned = dataclasses.replace(base, stack=stack, relay_domains=tuple(domains), sending_names=sending)
    return render.render(planned, settings, pem, gateway=stack.gateways[0], layout=layout)


def _run(*argv: str, stdin: str | None = None) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    # A refusal or a warning is part of the view: the hostile rendering must not add one.
    return f"rc={result.returncode}\n{result.stdout}{result.stderr}"


def views(files: dict[str, render.RenderedFile], marker: str, directories: dict[str, str]) -> dict[str, str]:
    """What the real parsers read from every file holding ``marker``; ``directories``:
    layout directory → the rendered folder it must show."""
    out = OUT
    shutil.rmtree(ROOT, ignore_errors=True)
    for path in render.write(files, out):
        # Postfix waits until a file it loads is 2 s old (it may still be written):
        # date them back, which changes nothing else.
        os.utime(path, (time.time() - 10, time.time() - 10))
    for directory, folder in directories.items():
        link = Path(directory) if directory.startswith("/") else ROOT / directory
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(out / folder)
    postfix, opendkim_conf = out / "postfix", out / "opendkim" / "opendkim.conf"
    holding = {name for name, f in files.items() if marker in f.text}
    seen: dict[str, str] = {}
    if "postfix/main.cf" in holding:
        seen["postconf -n"] = _run(binaries.binary("postconf"), "-c", str(postfix), "-n")
    if "postfix/master.cf" in holding:
        seen["postconf -F"] = _run(binaries.binary("postconf"), "-c", str(postfix), "-F")
        seen["postconf -P"] = _run(binaries.binary("postconf"), "-c", str(postfix), "-P")
    for table in ("postfix/transport", "postfix/relay_recipients"):
        if table in holding:
            built = _run(binaries.binary("postmap"), "-c", str(postfix), f"hash:{out / table}")
            seen[f"postmap -s {table}"] = built + _run(binaries.binary("postmap"), "-c", str(postfix), "-s", f"hash:{out / table}")
    if holding & {"opendkim/opendkim.conf", "opendkim/KeyTable", "opendkim/SigningTable", "opendkim/TrustedHosts"}:
        for name in ("Socket", "PidFile", "UserID", "KeyTable", "SigningTable", "InternalHosts", "ExternalIgnoreList"):
            seen[f"opendkim -e {name}"] = _run(binaries.binary("opendkim"), "-x", str(opendkim_conf), "-e", name)
        for line in files["opendkim/KeyTable"].text.splitlines():
            key = line.split("\t")[0]
            if "/" in key:
                continue  # opendkim -Q reads "key/fields": such a key cannot be asked for
            seen[f"opendkim -Q KeyTable {key}"] = _run(binaries.binary("opendkim"), "-Q", stdin=f"file:{out / 'opendkim/KeyTable'}\n{key}/3\n")
        for line in files["opendkim/SigningTable"].text.splitlines():
            address = "someone" + line.split("\t")[0].lstrip("*")
            if "/" in address:
                continue
            seen[f"opendkim -Q SigningTable {address}"] = _run(binaries.binary("opendkim"), "-Q", stdin=f"refile:{out / 'opendkim/SigningTable'}\n{address}/1\n")
        seen["opendkim -n"] = _run(binaries.binary("opendkim"), "-n", "-x", str(opendkim_conf))
    for ini, parser in (("mailstack/mailgate.conf", configparser.ConfigParser(interpolation=None)), ("odoo/odoo.conf", configparser.RawConfigParser())):
        if ini in holding:
            try:
                parser.read_string(files[ini].text)
                seen[ini] = "\n".join(f"[{s}] {k} = {v}" for s in parser.sections() for k, v in sorted(parser[s].items()))
            except configparser.Error as err:
                seen[ini] = f"configparser refused: {err}"
    for raw in ("postfix/sasl/smtpd.conf", "systemd/opendkim.service.d/mailstack.conf", "opendkim/TrustedHosts"):
        if raw in holding:  # no parser to ask: their formats only take single words
            seen[raw] = files[raw].text
    return seen


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def _directories(layout: render.Layout) -> dict[str, str]:
    return {layout.opendkim_dir: "opendkim", layout.mailstack_dir: "mailstack"}


@pytest.fixture(scope="module")
def baseline(pem: str) -> Iterator[dict[str, dict[str, str]]]:
    require_binary("postconf")
    require_binary("opendkim")
    files = rendered((STACK, STACK.gateway, LAYOUT), pem)
    try:
        yield {field: views(files, str(marker), _directories(LAYOUT)) for field, (_, marker) in FIELDS.items()}
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)


def test_the_baseline_is_clean(baseline: dict[str, dict[str, str]]) -> None:
    """Every field's marker reaches a file, and every tool accepts the baseline."""
    for field, seen in baseline.items():
        assert seen, f"{field}: its marker reaches no rendered file"
        for tool, view in seen.items():
            assert not view.startswith("rc=") or view.startswith("rc=0\n"), f"{field}: {tool}: {view}"
            assert "warning" not in view and "fatal" not in view, f"{field}: {tool}: {view}"


def _normal(seen: dict[str, str]) -> dict[str, str]:
    """Views compared regardless of order where the tool has none: ``postmap -s``
    lists a hash table in hash order."""
    return {tool: "\n".join(sorted(view.splitlines())) if tool.startswith("postmap -s") else view for tool, view in seen.items()}


def _cases() -> Iterator[Any]:
    for field, (_, marker) in FIELDS.items():
        values = [f"{marker}{suffix}" for suffix in SUFFIXES] + [f"{prefix}{marker}" for prefix in PREFIXES]
        for index, value in enumerate(values):
            yield pytest.param(field, value, id=f"{field}-{index}")


@pytest.mark.parametrize(("field", "value"), list(_cases()))
def test_a_hostile_value_is_refused_or_read_exactly(
    field: str, value: str, baseline: dict[str, dict[str, str]], pem: str
) -> None:
    setter, marker = FIELDS[field]
    if field in DIRECTORIES and not value.startswith(str(ROOT)):
        value = f"{ROOT}/{value}"  # a directory that exists (a link), whatever its name
    model = setter((STACK, STACK.gateway, LAYOUT), value)
    try:
        files = rendered(model, pem)
    except formats.FormatError as err:
        assert "cannot be written there" in str(err) or "is not" in str(err), err
        return
    except MailstackError as err:  # the DKIM key path of a selector that is no label
        assert "selector" in str(err), err
        return
    seen = _normal(views(files, value, _directories(model[2])))
    expected = _normal({tool.replace(str(marker), value): view.replace(str(marker), value) for tool, view in baseline[field].items()})
    # opendkim -Q reads "key/fields": a key with a "/" cannot be asked for.
    expected = {tool: view for tool, view in expected.items() if not (tool.startswith("opendkim -Q") and "/" in tool.split(" ", 3)[3])}
    for tool in [t for t in expected if seen.get(t) != expected[t]]:
        # The third outcome: the real tool refuses the file itself, naming the value
        # (Postfix checks mydomain's syntax), so nothing runs with it reinterpreted.
        assert not seen[tool].startswith("rc=0") and "fatal" in seen[tool] and value in seen[tool], (
            f"{field} = {value!r} changed what {tool} reads:\n{seen[tool]}\ninstead of\n{expected[tool]}"
        )


def test_a_line_break_never_reaches_a_file(pem: str) -> None:
    """The classic: a newline in tls.cert (an open relay once) is refused, naming it."""
    setter, _ = FIELDS["settings.tls.cert"]
    with pytest.raises(formats.FormatError, match=r"postfix/main.cf.j2 line \d+: settings.tls.cert = '/x\\nsmtpd_relay"):
        rendered(setter((STACK, STACK.gateway, LAYOUT), "/x\nsmtpd_relay_restrictions = permit"), pem)


def test_a_list_element_with_the_separator_is_refused(pem: str) -> None:
    setter, _ = FIELDS["stack.alias_domains[0]"]
    with pytest.raises(formats.FormatError, match=r"relay_domains\|words\(', '\)\[\d\] = 'a.example,b.example'"):
        rendered(setter((STACK, STACK.gateway, LAYOUT), "a.example,b.example"), pem)


def test_every_template_has_a_format_and_a_new_one_without_is_refused() -> None:
    import importlib.resources

    templates = {
        str(path.relative_to(Path(str(importlib.resources.files("mailstack.templates")))))
        for path in Path(str(importlib.resources.files("mailstack.templates"))).rglob("*.j2")
    }
    assert templates == set(formats.FORMATS)
    env = render.new_environment()
    with pytest.raises(formats.FormatError, match="has no file format"):
        env.from_string("x = {{ value }}").render(value="y")


def test_the_extension_checks_every_interpolation() -> None:
    """Even an expression a template author did not think of: filters, conditionals,
    arithmetic are all checked on what they output."""
    env = render.new_environment()
    env.loader = None
    template = env.from_string("a = {{ v | upper }}\nb = {{ 'x' if v else w }}\nc = {{ n + 1 }}\n")
    template.name = "postfix/main.cf.j2"
    assert template.render(v="ok", w="", n=1) == "a = OK\nb = x\nc = 2\n"
    with pytest.raises(formats.FormatError, match=r"line 2: 'x' if v else w = 'a\\nb'"):
        template.render(v="", w="a\nb", n=1)
