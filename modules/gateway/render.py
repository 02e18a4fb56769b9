"""Render a gateway host's configuration from the plan: Postfix, OpenDKIM, odoo.conf.

``render(plan, settings, dkim_private_key_pem)`` returns every file as text plus its
mode, keyed by a path relative to the rendered tree (``postfix/main.cf``,
``opendkim/KeyTable``, ...). The templates (``mailstack.templates``, the project's
``templates/`` folder) hold the configuration; this module only hands them values the
plan already holds (relay domains, signing domains, MX hosts) and the accepted
recipients. Same stack, same bytes: no clock, no host name, no dict order leaks into
the output.

Where the files go on a host is a ``Layout`` (``mailstack.gateway.layout``).
"""

from __future__ import annotations

import functools
import importlib.resources
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from cryptography.hazmat.primitives import serialization

from mailstack.core import names
from mailstack.core.errors import ConfigError, ConfigErrors, MailstackError, quote
from mailstack.core.model import Gateway, GatewaySettings
from mailstack.gateway import formats
from mailstack.gateway.layout import Layout
from mailstack.plan import Plan
from mailstack.rules import mta_sts

#: The package holding the Jinja templates (the project's ``templates/`` folder).
TEMPLATES_PACKAGE = "mailstack.templates"
#: The master.cf transport to the mailgate: LMTP to the resident mailgate, or the pipe.
MAILGATE_TRANSPORT = "odoo"
#: The cleanup service of the MX's smtpd in forward mode (redirect + SRS), master.cf.
REDIRECT_CLEANUP = "odoo-redirect"
#: Odoo's local parts every gateway accepts, whatever the stack declares on top.
#: postmaster (RFC 5321 §4.5.1: a MUST) and abuse (RFC 2142: complaints about the domain's mail).
REQUIRED_LOCAL_PARTS = ("postmaster", "abuse")
#: Rendered maps that need ``postmap`` before Postfix can read them.
POSTMAP_FILES = ("postfix/transport", "postfix/relay_recipients", "postfix/role_addresses")
#: nginx's site of the MTA-STS policy hosts (``mtaSts.serve: gateway``).
NGINX_SITE = "nginx/conf.d/mailstack-mta-sts.conf"
POLICY_PATH = "/.well-known/mta-sts.txt"
#: Where Odoo submits: the submission service (RFC 6409), never port 25.
SUBMISSION_PORT = 587
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


@dataclass(frozen=True, slots=True)
class RenderedFile:
    """One rendered file: its text and the mode it must have (0600 when secret)."""

    text: str
    mode: int = PUBLIC_MODE

    @property
    def secret(self) -> bool:
        return self.mode == SECRET_MODE


def render(
    plan: Plan,
    settings: GatewaySettings | None = None,
    dkim_private_key_pem: str | None = None,
    *,
    gateway: Gateway | None = None,
    layout: Layout | None = None,
) -> dict[str, RenderedFile]:
    """Every configuration file of one gateway host, by relative path, sorted.

    ``settings`` defaults to the stack's own (``mailstack:gateway``); ``gateway`` to
    the first declared gateway (it only sets the host's own name). Without
    ``dkim_private_key_pem`` (the key of ``plan.signing_selector``: during a DKIM
    rotation the phase's) the key file is left out (Pulumi pushes it separately, as
    a secret). Raises ConfigErrors for a stack without gateways, MailstackError for a
    key that is not a PEM private key; nothing is returned half-way.
    """
    stack = plan.stack
    settings = settings or stack.gateway
    if not stack.gateways or settings is None:
        raise ConfigErrors([ConfigError(("gateways",), "the stack declares no gateway: there is no gateway configuration to render")])
    gateway = gateway or stack.gateways[0]
    if gateway not in stack.gateways:
        raise MailstackError(f"{gateway.hostname} is not a gateway of this stack")
    layout = layout or Layout()
    context = _values(plan, settings, gateway, layout)
    env = _environment()
    files: dict[str, RenderedFile] = {}
    templates = {
        "postfix/main.cf": "postfix/main.cf.j2",
        "postfix/master.cf": "postfix/master.cf.j2",
        "postfix/submission_senders": "postfix/submission_senders.j2",
        "postfix/submission_header_checks": "postfix/submission_header_checks.j2",
        "postfix/submission_line_checks": "postfix/submission_line_checks.j2",
        "postfix/submission_milter_checks": "postfix/submission_milter_checks.j2",
        "opendkim/opendkim.conf": "opendkim/opendkim.conf.j2",
        "opendkim/KeyTable": "opendkim/KeyTable.j2",
        "opendkim/SigningTable": "opendkim/SigningTable.j2",
        "opendkim/TrustedHosts": "opendkim/TrustedHosts.j2",
        "mailstack/mailgate.conf": "mailstack/mailgate.conf.j2",
        "odoo/odoo.conf": "odoo/odoo.conf.j2",
        "systemd/opendkim.service.d/mailstack.conf": "systemd/opendkim.conf.j2",
    }
    if stack.forwards_through_gateways:
        templates["postfix/odoo_redirect"] = "postfix/odoo_redirect.j2"
        templates["postsrsd/postsrsd"] = "postsrsd/postsrsd.j2"
    else:
        templates["postfix/transport"] = "postfix/transport.j2"
    if not stack.inbound.accept_all:
        templates["postfix/relay_recipients"] = "postfix/relay_recipients.j2"
        if needs_aliasd(plan, settings):
            templates["mailstack/aliasd.conf"] = "mailstack/aliasd.conf.j2"
            templates["systemd/mailstack-aliasd.service"] = "systemd/mailstack-aliasd.service.j2"
    if stack.inbound.postmaster and not stack.forwards_through_gateways:
        templates["postfix/role_addresses"] = "postfix/role_addresses.j2"
    if settings.smtp_auth:
        templates["postfix/sasl/smtpd.conf"] = "postfix/sasl_smtpd.conf.j2"
    if runs_mailgated(plan, settings):
        templates["systemd/mailstack-mailgate.service"] = "systemd/mailstack-mailgate.service.j2"
    for relative, template in templates.items():
        files[relative] = RenderedFile(env.get_template(template).render(context))
    for domain, text in policies(plan).items():
        files[policy_path(domain)] = RenderedFile(text)
    if serves_mta_sts(plan):
        files[NGINX_SITE] = RenderedFile(render_mta_sts_site(plan, layout, settings.tls.cert, settings.tls.key, gateway.hostname))
    if dkim_private_key_pem is not None:
        files[key_path(plan.signing_selector)] = RenderedFile(_checked_private_key(dkim_private_key_pem), SECRET_MODE)
    return dict(sorted(files.items()))


def policies(plan: Plan) -> dict[str, str]:
    """The MTA-STS policy text of each domain with an MX set (the text the plan's
    ``_mta-sts`` id is the hash of)."""
    stack = plan.stack
    if not stack.mta_sts:
        return {}
    found = {}
    for domain in stack.domains:
        hosts = [mx.host for mx in plan.mx_hosts[domain]]
        if hosts:
            found[domain] = mta_sts.policy_text(stack.mta_sts.mode, hosts, stack.mta_sts.max_age)
    return found


def policy_path(domain: str) -> str:
    """The rendered path of a domain's policy: the document root of ``mta-sts.<domain>``
    (``mta-sts/<domain>``) holds ``.well-known/mta-sts.txt``."""
    return f"mta-sts/{names.domain(domain)}{POLICY_PATH}"


def serves_mta_sts(plan: Plan) -> bool:
    """True when the gateways serve the policy hosts themselves (``mtaSts.serve: gateway``)."""
    return plan.stack.mta_sts is not None and plan.stack.mta_sts.serve == "gateway" and bool(policies(plan))


def render_mta_sts_site(plan: Plan, layout: Layout, cert: str, key: str, hostname: str) -> str:
    """nginx's server blocks for ``mta-sts.<domain>`` of every domain with a policy, on
    ``layout.https_listen`` with the certificate ``cert`` (a gateway's ``gateway.tls``);
    the lab's policy hosts run this same site (``mailstack.lab.nginx``)."""
    sites = [{"host": mta_sts.policy_host(domain), "root": layout.host_path(f"mta-sts/{domain}")} for domain in policies(plan)]
    values = {"layout": layout, "sites": sites, "cert": cert, "key": key, "hostname": hostname}
    return _environment().get_template("nginx/mta-sts.conf.j2").render(values)


def mailgate_source() -> str:
    """The mailgate program (``mailstack.gateway.mailgate``, standard library only) as
    the text copied to a gateway host and run there by its system Python."""
    return importlib.resources.files("mailstack.gateway").joinpath("mailgate.py").read_text(encoding="utf-8")


def mailgated_source() -> str:
    """The resident mailgate (``mailstack.gateway.mailgated``, standard library only): the
    LMTP service copied beside the mailgate, whose rules (``mailgate.py``) it loads."""
    return importlib.resources.files("mailstack.gateway").joinpath("mailgated.py").read_text(encoding="utf-8")


def aliasd_source() -> str:
    """mailstack-aliasd (``mailstack.gateway.aliasd``, standard library only), the RCPT
    validation service copied to a gateway host beside the mailgate."""
    return importlib.resources.files("mailstack.gateway").joinpath("aliasd.py").read_text(encoding="utf-8")


def resident_mailgate(settings: GatewaySettings) -> bool:
    """True when Postfix delivers to the resident mailgate over LMTP (the default),
    False when its pipe starts a mailgate per message (``gateway.mailgate.delivery``)."""
    return settings.mailgate.delivery == "lmtp"


def runs_mailgated(plan: Plan, settings: GatewaySettings) -> bool:
    """True when the gateway runs the resident mailgate: LMTP delivery, and Postfix
    delivers to Odoo at all (relay domains; not in forward mode)."""
    return resident_mailgate(settings) and not plan.stack.forwards_through_gateways and bool(plan.relay_domains)


def uses_mailgated(files: Mapping[str, RenderedFile]) -> bool:
    """True when the rendered gateway runs mailstack-mailgated (its systemd unit)."""
    return "systemd/mailstack-mailgate.service" in files


def needs_aliasd(plan: Plan, settings: GatewaySettings) -> bool:
    """True when the gateway validates recipients against Odoo's live aliases
    (mailstack-aliasd): a recipient list, checked with Odoo, for relay domains."""
    return not plan.stack.inbound.accept_all and settings.recipient_check == "odoo" and bool(plan.relay_domains)


def uses_aliasd(files: Mapping[str, RenderedFile]) -> bool:
    """True when the rendered gateway validates recipients with mailstack-aliasd."""
    return "mailstack/aliasd.conf" in files


def key_path(selector: str) -> str:
    """The rendered path of the gateway's DKIM private key for a selector (one DNS
    label: a selector never names a file elsewhere)."""
    try:
        names.label(selector)
    except names.InvalidName as err:
        raise formats.FormatError(f"stack.dkim.selector: {err}") from None
    return f"opendkim/keys/{selector}.private"


def role_addresses(plan: Plan) -> list[tuple[str, str]]:
    """(address, destination) for postmaster@ and abuse@ of every relay domain, when the
    stack routes them (``inbound.postmaster``): a Postfix virtual alias (gateway mode)
    or a line of the redirect map before the general one (forward mode). Empty when
    they go to Odoo like any address."""
    destination = plan.stack.inbound.postmaster
    if not destination:
        return []
    return [(f"{local}@{domain}", destination) for domain in plan.relay_domains for local in REQUIRED_LOCAL_PARTS]


def accepted_recipients(plan: Plan) -> list[str]:
    """The declared addresses accepted at RCPT time: Odoo's bounce and catchall,
    postmaster and abuse (RFC 5321 §4.5.1, RFC 2142) and the declared aliases, on every relay domain —
    exactly, no ``+detail`` (Odoo 17 strips none). Not ``notifications@``: Odoo routes
    it only as a reply and bounces anything else. With ``gateway.recipientCheck: odoo``
    this is mailstack-aliasd's fallback while Odoo cannot be asked."""
    odoo = plan.stack.odoo
    local_parts = {odoo.bounce, odoo.catchall, *REQUIRED_LOCAL_PARTS, *plan.stack.inbound.aliases}
    return sorted(f"{local}@{domain}" for domain in plan.relay_domains for local in local_parts)


def _values(plan: Plan, settings: GatewaySettings, gateway: Gateway, layout: Layout) -> dict[str, Any]:
    submission_encrypt = settings.tls.required or settings.smtp_auth is not None
    stack = plan.stack
    submission = odoo_smtp(settings, gateway)
    return {
        "forward": stack.forwards_through_gateways,
        "redirect_cleanup": REDIRECT_CLEANUP,
        "saas_host": stack.odoo.saas_host or "",
        "srs_exclude": [d for d in stack.domains if d != stack.domain],
        "stack": plan.stack,
        "settings": settings,
        "gateway": gateway,
        "layout": layout,
        "inet_protocols": layout.inet_protocols,
        "mailgate_transport": MAILGATE_TRANSPORT,
        # The transport's next hop: the resident mailgate's LMTP socket, or (pipe) a
        # name only, the same for every domain so recipients go together.
        "mailgate_nexthop": f"inet:{layout.mailgated_host}:{layout.mailgated_port}" if resident_mailgate(settings) else "odoo",
        "relay_domains": plan.relay_domains,
        "recipients": accepted_recipients(plan),
        "role_addresses": role_addresses(plan),
        "role_destination": stack.inbound.postmaster or "",
        "accept_all": plan.stack.inbound.accept_all,
        "signing_domains": plan.signing_domains,
        # The selector OpenDKIM signs with: during a DKIM rotation the plan's phase
        # decides it (rules.dkim_rotation), so the switch waits for the new record.
        "signing_selector": plan.signing_selector,
        "submission_encrypt": submission_encrypt,
        # Odoo submits on the submission port only (port 25 is the MX and relays for
        # nobody); smtp_ssl is Odoo's STARTTLS switch, on when TLS or AUTH is required.
        "odoo_smtp_port": submission.port,
        "odoo_smtp_server": submission.host,
        "odoo_smtp_ssl": submission.starttls,
    }


@dataclass(frozen=True, slots=True)
class OdooSmtp:
    """Where Odoo submits its mail to this gateway: odoo.conf's smtp_* options, and the
    ``ir.mail_server`` mailstack declares when it manages Odoo's outgoing server."""

    host: str
    port: int
    #: STARTTLS (odoo.conf's ``smtp_ssl``, ``ir.mail_server.smtp_encryption = starttls``).
    starttls: bool
    user: str | None


def odoo_smtp(settings: GatewaySettings, gateway: Gateway) -> OdooSmtp:
    """Odoo's submission to ``gateway``: always the submission port (587; port 25 is
    the MX and relays for nobody), with STARTTLS when TLS or SMTP AUTH is required
    there; Odoo on the gateway itself
    (127.0.0.1 trusted, the default) connects over loopback — through the public name
    it would arrive from a non-trusted address."""
    encrypt = settings.tls.required or settings.smtp_auth is not None
    return OdooSmtp(
        host="127.0.0.1" if _trusts_localhost(settings.odoo_addresses) else gateway.hostname,
        port=SUBMISSION_PORT,
        starttls=encrypt,
        user=settings.smtp_auth.user if settings.smtp_auth else None,
    )


def _trusts_localhost(networks: tuple[str, ...]) -> bool:
    localhost = ipaddress.ip_address("127.0.0.1")
    return any(localhost in _network(network) for network in networks)


def _network(network: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(network)
    except ValueError:
        raise formats.FormatError(f"settings.odoo_addresses: {quote(network)} is not an IP network") from None


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """The templates' environment, built once (it compiles each template once)."""
    return new_environment()


def new_environment() -> jinja2.Environment:
    """A Jinja environment for the templates: strict, and every interpolated value
    checked for its file's format (``mailstack.gateway.formats``)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(TEMPLATES_PACKAGE, "."),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        # Every {{ value }} is checked for what its file's format can hold.
        extensions=[formats.CheckEveryValue],
    )
    env.filters["postfix_network"] = postfix_network
    env.filters["words"] = formats.words
    env.filters["regexp_literal"] = formats.regexp_literal
    env.filters[formats.CHECK_FILTER] = formats.check_value
    env.filters["regex_words"] = formats.regex_words
    return env


def postfix_network(network: str) -> str:
    """A network as ``mynetworks`` writes it: IPv6 in brackets (``[::1]/128``)."""
    parsed = _network(network)
    if parsed.version == 6:
        return f"[{parsed.network_address}]/{parsed.prefixlen}"
    return str(parsed)


def _checked_private_key(pem: str) -> str:
    try:
        serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as err:
        raise MailstackError("the DKIM private key is not an unencrypted PEM private key") from err
    return pem if pem.endswith("\n") else pem + "\n"


#: Directories ``write`` creates: 0755, and 0700 for one holding a secret file (the
#: DKIM key's ``opendkim/keys``), whatever the umask.
DIRECTORY_MODE = 0o755
SECRET_DIRECTORY_MODE = 0o700


def write(files: Mapping[str, RenderedFile], out: Path) -> list[Path]:
    """Write rendered files below ``out`` with their modes; returns the paths written.

    Secret files are created with their final mode (never briefly world-readable), in
    a directory that is 0700 whatever the umask (an existing one is narrowed to it);
    every other directory created is 0755."""
    written: list[Path] = []
    for relative, rendered in files.items():
        parts = relative.split("/")
        if relative.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise MailstackError(f"{quote(relative)} is not a path inside the rendered tree")
        target = out / relative
        make_directories(target.parent, SECRET_DIRECTORY_MODE if rendered.secret else DIRECTORY_MODE)
        if rendered.secret:
            os.chmod(target.parent, SECRET_DIRECTORY_MODE)
        if target.exists():
            target.unlink()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, rendered.mode)
        with os.fdopen(fd, "wb") as handle:  # bytes: CRLF (MTA-STS) stays CRLF
            handle.write(rendered.text.encode("utf-8"))
        os.chmod(target, rendered.mode)
        written.append(target)
    return written


def make_directories(path: Path, mode: int) -> None:
    """``mkdir -p`` with an explicit mode: the missing parents get DIRECTORY_MODE, the
    last one ``mode``, each chmod'ed after creation so the umask (000 included)
    cannot widen them."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # made meanwhile by somebody else: leave its mode alone
        os.chmod(directory, mode if directory == path else DIRECTORY_MODE)
