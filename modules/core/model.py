"""The typed declaration of a mail domain: ``MailDomain`` and its parts.

All classes are frozen and slotted: a MailDomain is built once by ``mailstack.config``
(which validates and coerces every value) and then only read, by the record plan, the
gateway renderer, the providers and the checks. Invalid objects are never constructed
(the config layer refuses them first), so nothing here validates again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mailstack.core.names import normalize, within


class Hosting(StrEnum):
    """Where Odoo runs: on Odoo's SaaS, on Odoo.sh, or on the user's own servers."""

    ONLINE = "online"
    SH = "sh"
    ONPREMISE = "onpremise"


class InboundMode(StrEnum):
    """How inbound mail reaches Odoo."""

    ODOO_MX = "odoo-mx"  # MX/CNAME of a subdomain to <db>.odoo.com (Online, Odoo.sh)
    GATEWAY = "gateway"  # MX to the own gateways, mailgate into Odoo
    FORWARD = "forward"  # mailboxes elsewhere (inbound.mx) or the gateways forward to Odoo's aliases
    IMAP = "imap"  # Odoo's fetchmail polls a mailbox elsewhere
    NONE = "none"  # the domain receives no mail: null MX (RFC 7505)


class SenderKind(StrEnum):
    """Who may send mail for the domain; each kind has a profile in ``mailstack.rules.senders``."""

    ODOO = "odoo"
    GATEWAY = "gateway"
    MAILJET = "mailjet"
    GOOGLE = "google"
    MICROSOFT = "microsoft"
    SPF = "spf"  # raw SPF terms, the escape hatch


class OdooSetting(StrEnum):
    """What mailstack may manage inside Odoo (``odoo.manage``), each a Pulumi resource."""

    ALIAS_DOMAINS = "aliasDomains"  # mail.alias.domain (+ res.company.alias_domain_id)
    OUTGOING_SERVER = "outgoingServer"  # ir.mail_server
    INCOMING_SERVER = "incomingServer"  # fetchmail.server (inbound.mode imap)


#: ``ir.mail_server.smtp_encryption`` (Odoo 17): none, STARTTLS, or implicit TLS.
SMTP_SECURITY = ("none", "starttls", "ssl")


@dataclass(frozen=True, slots=True)
class OutgoingServer:
    """Odoo's outgoing mail server (``ir.mail_server``) as ``odoo.outgoingServer`` declares
    it; without the key it is derived from the first gateway (see ``mailstack.odoo.desired``)."""

    host: str
    port: int = 587
    #: ``smtp_encryption``: none | starttls | ssl.
    security: str = "starttls"
    #: SMTP AUTH user; its password is the Pulumi secret ``mailstack:smtpAuthPassword``.
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Odoo:
    """The Odoo side: hosting, database and the alias-domain addresses Odoo 17 uses."""

    hosting: Hosting
    database: str | None = None
    url: str | None = None
    #: The Odoo SaaS host inbound mail goes to; defaults to ``<database>.odoo.com``.
    host: str | None = None
    bounce: str = "bounce"
    catchall: str = "catchall"
    notifications: str = "notifications"
    #: The login mailstack uses over XML-RPC (provider, checks); password: ``mailstack:odooPassword``.
    login: str = "admin"
    #: What mailstack manages inside Odoo (``odoo.manage``); empty: nothing.
    manage: tuple[OdooSetting, ...] = ()
    #: ``odoo.companies``: (company name, alias domain) pairs mailstack sets
    #: ``res.company.alias_domain_id`` for; empty: Odoo's own default applies.
    companies: tuple[tuple[str, str], ...] = ()
    #: ``odoo.outgoingServer``; None: derived from the gateways.
    outgoing_server: OutgoingServer | None = None
    #: ``odoo.adopt``: take over a same-named record mailstack did not create (its values
    #: are kept and restored on delete) instead of refusing.
    adopt: bool = False

    def manages(self, setting: OdooSetting) -> bool:
        """True when ``odoo.manage`` lists ``setting``."""
        return setting in self.manage

    @property
    def rpc_url(self) -> str | None:
        """Odoo's base URL for XML-RPC: ``url``, else ``https://<db>.odoo.com`` on SaaS."""
        if self.url:
            return self.url
        host = self.saas_host
        return f"https://{host}" if host else None

    @property
    def saas(self) -> bool:
        """True when Odoo S.A. runs the servers (Online or Odoo.sh)."""
        return self.hosting in (Hosting.ONLINE, Hosting.SH)

    @property
    def saas_host(self) -> str | None:
        """Odoo's own host of a SaaS database (``host``, else ``<database>.odoo.com``):
        the target of inbound mail and the domain of Odoo's Return-Path; None on premise."""
        if not self.saas:
            return None
        return normalize(self.host or f"{self.database}.odoo.com")


@dataclass(frozen=True, slots=True)
class SshTarget:
    """How Pulumi reaches a gateway host; the private key comes as a Pulumi secret."""

    user: str = "root"
    port: int = 22
    host: str | None = None  # defaults to the gateway's ipv4
    #: The host's SSH public key (``ssh-ed25519 AAAA...``): the deploy refuses any
    #: other. None: pulumi-command accepts whatever key the host presents.
    host_key: str | None = None


@dataclass(frozen=True, slots=True)
class Gateway:
    """One own mail gateway host: MX for inbound, relay for outbound."""

    hostname: str
    ipv4: str
    ipv6: str | None = None
    priority: int = 10
    ssh: SshTarget = field(default_factory=SshTarget)


@dataclass(frozen=True, slots=True)
class MxHost:
    """An MX target outside the stack (Google, Microsoft, a forwarding provider)."""

    host: str
    priority: int


@dataclass(frozen=True, slots=True)
class Sender:
    """One declared sender and the inputs its profile needs."""

    kind: SenderKind
    #: Raw SPF terms (kind ``spf``), e.g. ``("ip4:192.0.2.1", "include:spf.example.net")``.
    spf_terms: tuple[str, ...] = ()
    #: DKIM public key (base64 of the DER SubjectPublicKeyInfo) for Google and Mailjet.
    dkim_key: str | None = None
    #: DKIM selector of a third-party sender (Google: ``google``, Mailjet: ``mailjet``).
    dkim_selector: str | None = None
    #: Microsoft 365 tenant (the ``<tenant>.onmicrosoft.com`` prefix).
    tenant: str | None = None
    #: Microsoft 365's DKIM CNAME targets as the tenant's admin centre shows them,
    #: ``(sending name, selector, target)``; a name not listed gets the formula
    #: (``mailstack.rules.senders.microsoft_dkim_target``).
    dkim_targets: tuple[tuple[str, str, str], ...] = ()


#: IMAP security (``inbound.imap.security``): implicit TLS (993) or STARTTLS (143).
IMAP_SECURITY = ("ssl", "starttls")


@dataclass(frozen=True, slots=True)
class ImapMailbox:
    """The mailbox Odoo fetches by IMAP (``inbound.imap``, mode imap); its password is
    the Pulumi secret ``mailstack:imapPassword``."""

    host: str
    user: str
    port: int = 993
    security: str = "ssl"
    folder: str = "INBOX"
    #: Minutes between fetches (the "Mail: Fetchmail Service" cron's interval).
    interval: int = 5
    #: ``fetchmail.server.object_id``: the model mail without an alias creates records
    #: in ("Create a New Record"); None: alias routing only.
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """How inbound mail reaches Odoo."""

    mode: InboundMode
    #: The dedicated label for ``odoo-mx`` (Odoo's docs: never the root), optional else.
    subdomain: str | None = None
    #: ``odoo-mx`` publishes an ``mx`` (MX 10) or a ``cname`` to ``<db>.odoo.com``.
    record: str = "mx"
    #: MX hosts for ``forward`` and ``imap``: where the mailboxes live.
    mx: tuple[MxHost, ...] = ()
    #: Local parts the gateway accepts besides Odoo's catchall and bounce.
    aliases: tuple[str, ...] = ()
    #: Accept every local part (catch-all); risks backscatter, see docs.
    accept_all: bool = False
    #: Mode imap: the mailbox Odoo's fetchmail polls (None: not declared).
    imap: ImapMailbox | None = None
    #: Where the gateways deliver postmaster@ and abuse@ of every mail domain (RFC 5321
    #: §4.5.1, RFC 2142); None: handed to Odoo like any address (Odoo needs aliases).
    postmaster: str | None = None


@dataclass(frozen=True, slots=True)
class Dkim:
    """The gateway's own DKIM key, and the key it replaces while a rotation runs."""

    selector: str = "mailstack"
    bits: int = 2048
    #: The selector being rotated away from (``dkim.previous``); None: no rotation.
    previous: str | None = None
    #: Seconds the previous key's record stays published after the switch, on top of
    #: its TTL (``dkim.retireMargin``): mail signed before the switch may still sit in
    #: the gateway's queue (Postfix retries for 5 days) and is verified on arrival.
    retire_margin: int = 5 * 86400


@dataclass(frozen=True, slots=True)
class Spf:
    """SPF options: the ``all`` term closing each record."""

    all: str = "~all"


@dataclass(frozen=True, slots=True)
class Dmarc:
    """DMARC tags (RFC 9989 §4.7). No pct, rf or ri: RFC 9989 removed them."""

    policy: str = "none"
    subdomain_policy: str | None = None
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    adkim: str = "r"
    aspf: str = "r"
    fo: str | None = None
    #: ``t=y`` (RFC 9989 §4.7): receivers do not apply the policy yet.
    testing: bool = False
    #: ``np=``: the policy for subdomains that do not exist (RFC 9989 §4.7).
    nonexistent_policy: str | None = None


@dataclass(frozen=True, slots=True)
class MtaSts:
    """MTA-STS (RFC 8461): the policy mode, its cache lifetime, and who serves it."""

    mode: str = "testing"
    max_age: int = 604800
    #: ``gateway``: every gateway runs nginx serving ``https://mta-sts.<domain>/``
    #: (the default when the stack has gateways); ``external``: another web server does.
    serve: str = "gateway"


@dataclass(frozen=True, slots=True)
class TlsRpt:
    """SMTP TLS reporting (RFC 8460)."""

    rua: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dns:
    """Where and how the records are published."""

    provider: str = "cloudflare"
    zone: str = ""
    ttl: int = 3600
    #: Zones of the alias domains, by domain; defaults to the alias domain itself.
    alias_zones: tuple[tuple[str, str], ...] = ()
    # RFC 2136 (on premise)
    server: str | None = None
    port: int = 53
    tsig_key_name: str | None = None
    tsig_algorithm: str = "hmac-sha256"
    #: Let a change delete MX and planned mail records (the policy pack refuses otherwise).
    allow_delete: bool = False
    #: Existing records mailstack takes over, by planned record key: on Cloudflare the
    #: import id (``<zone_id>/<record_id>``), on RFC 2136 the live value it replaces.
    adopt: tuple[tuple[str, str], ...] = ()
    #: ``alias_zones`` by domain, with each entry's position (built once: a plan asks
    #: for the zone of every record, and a stack may have a thousand alias domains).
    _alias_index: dict[str, tuple[int, str]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        index: dict[str, tuple[int, str]] = {}
        for position, (domain, zone) in enumerate(self.alias_zones):
            index.setdefault(domain, (position, zone))
        object.__setattr__(self, "_alias_index", index)

    def zone_of(self, name: str) -> str:
        """The zone a name's records live in: an explicit alias zone (the first listed
        whose domain the name is at or below), the main zone when the name is below
        it, else the name itself (an alias domain's own zone)."""
        labels = name.split(".")
        found = [self._alias_index[s] for s in (".".join(labels[i:]) for i in range(len(labels))) if s in self._alias_index]
        if found:
            return min(found)[1]
        if within(name, self.zone):
            return self.zone
        return name


# -- how the own gateways are run (mailstack:gateway) ----------------------------------
# The rest of the model says which domains, aliases and hosts exist; these say what only
# the gateway servers need (submission addresses, SMTP AUTH, relay host, TLS, limits,
# how the mailgate reaches Odoo). ``mailstack.config.gateway`` reads them.

#: Debian's postfix depends on ssl-cert, which creates this self-signed pair.
DEFAULT_TLS_CERT = "/etc/ssl/certs/ssl-cert-snakeoil.pem"
DEFAULT_TLS_KEY = "/etc/ssl/private/ssl-cert-snakeoil.key"
DEFAULT_PASSWORD_FILE = "/etc/mailstack/odoo-password"
#: Odoo's uid of the first administrator (uid 1 is __system__, which cannot log in).
DEFAULT_UID = 2
#: Mailgate runs at once (Postfix's ``<transport>_destination_concurrency_limit``): each
#: is one process and one XML-RPC call in flight at Odoo. See docs/gateway.md for the
#: measured effect.
DEFAULT_MAILGATE_CONCURRENCY = 8
#: How Postfix hands a message to the mailgate: ``lmtp`` (the default) to the resident
#: mailstack-mailgated, ``pipe`` to a mailgate process started per message (no service
#: to run; a few messages a minute). docs/gateway.md compares them.
MAILGATE_DELIVERIES = ("lmtp", "pipe")
#: Postfix's default_process_limit: more mailgates than that never run at once.
MAX_MAILGATE_CONCURRENCY = 100
DEFAULT_SIZE_LIMIT = 36700160  # 35 MiB: Odoo attachments grow ~37% in base64
LOOPBACK = ("127.0.0.0/8", "::1/128")

@dataclass(frozen=True, slots=True)
class RelayHost:
    """Where outbound mail goes instead of the recipients' MX (a smarthost)."""

    host: str
    port: int = 25

    @property
    def postfix(self) -> str:
        """The ``relayhost`` value: ``[host]:port`` (brackets: no MX lookup, a smarthost
        is a host, not a domain)."""
        return f"[{self.host}]:{self.port}"


@dataclass(frozen=True, slots=True)
class Tls:
    """The gateway's certificate; STARTTLS is always offered with it."""

    cert: str = DEFAULT_TLS_CERT
    key: str = DEFAULT_TLS_KEY
    #: Require STARTTLS from Odoo (submission). Port 25 stays opportunistic: RFC 3207
    #: §4 says a publicly referenced MX must not require TLS.
    required: bool = False
    #: DANE (``tls.dane``): SHA-256 digests of the gateway key's SubjectPublicKeyInfo,
    #: the current one first, then the next key's during a rollover; each becomes a
    #: ``_25._tcp.<gateway> TLSA 3 1 1`` record (``mailstack.rules.dane``).
    dane: tuple[str, ...] = ()
    #: Per gateway host (``tls.dane.hosts``): its own digests, for hosts with their own key.
    dane_hosts: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def dane_for(self, hostname: str) -> tuple[str, ...]:
        """The digests whose TLSA records ``hostname`` gets (its own, else the shared)."""
        return dict(self.dane_hosts).get(hostname, self.dane)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Per-client limits (Postfix anvil, per minute); Odoo's addresses are exempt."""

    connections: int = 60
    messages: int = 100
    recipients: int = 300
    concurrency: int = 20


@dataclass(frozen=True, slots=True)
class SmtpAuth:
    """SMTP AUTH for Odoo on the submission port (587); its password is a secret."""

    user: str


@dataclass(frozen=True, slots=True)
class Mailgate:
    """How the mailgate reaches Odoo's XML-RPC (``/xmlrpc/2/object``)."""

    url: str
    database: str
    uid: int | None = DEFAULT_UID
    #: When set, the mailgate authenticates this login instead of using ``uid``.
    login: str | None = None
    password_file: str = DEFAULT_PASSWORD_FILE
    timeout: int = 60
    #: Deliveries to Odoo at once (Postfix's concurrency to the mailgate, and the
    #: resident mailgate's sessions with Odoo).
    concurrency: int = DEFAULT_MAILGATE_CONCURRENCY
    #: ``lmtp`` or ``pipe`` (MAILGATE_DELIVERIES).
    delivery: str = MAILGATE_DELIVERIES[0]


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Everything the gateway servers need besides the MailDomain."""

    mailgate: Mailgate
    #: Addresses/networks allowed to submit without AUTH (Postfix ``mynetworks``) and
    #: whose mail OpenDKIM signs. Default: loopback (Odoo on the gateway host itself);
    #: when given, exactly these (add 127.0.0.1 yourself if Odoo also runs locally).
    odoo_addresses: tuple[str, ...] = LOOPBACK
    smtp_auth: SmtpAuth | None = None
    relay_host: RelayHost | None = None
    tls: Tls = field(default_factory=Tls)
    message_size_limit: int = DEFAULT_SIZE_LIMIT
    rate_limits: RateLimits = field(default_factory=RateLimits)
    #: Let ``pulumi up`` push the configuration over SSH (the Gateway component);
    #: false renders only (``mailstack render``), for hosts managed another way.
    deploy: bool = True
    #: How RCPT TO is validated: ``odoo`` asks Odoo's live aliases (mailstack-aliasd,
    #: the static list as fallback), ``static`` uses the declared list only.
    recipient_check: str = "odoo"
    #: Seconds mailstack-aliasd keeps Odoo's answer (a miss re-asks after 10 s).
    recipient_refresh: int = 60


@dataclass(frozen=True, slots=True)
class Checks:
    """``mailstack:checks``: check ids ``mailstack check`` skips for this stack, and the
    DNS blocklists ``reputation.dnsbl`` asks (None: ``mailstack.rules.dnsbl.DEFAULT_ZONES``)."""

    disable: tuple[str, ...] = ()
    blocklists: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class MailDomain:
    """The whole validated declaration of one stack."""

    domain: str
    odoo: Odoo
    outbound: tuple[Sender, ...]
    inbound: Inbound
    dns: Dns
    alias_domains: tuple[str, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    dkim: Dkim = field(default_factory=Dkim)
    spf: Spf = field(default_factory=Spf)
    dmarc: Dmarc = field(default_factory=Dmarc)
    mta_sts: MtaSts | None = None
    tls_rpt: TlsRpt | None = None
    #: How the own gateways are run (``mailstack:gateway``); set whenever gateways exist.
    gateway: GatewaySettings | None = None
    #: What the check suite skips (``mailstack:checks``).
    checks: Checks = field(default_factory=Checks)

    @property
    def domains(self) -> tuple[str, ...]:
        """The main domain first, then the alias domains: each gets a full record set."""
        return (self.domain, *self.alias_domains)

    def sends_via(self, kind: SenderKind) -> bool:
        """True when a sender of that kind is declared."""
        return any(sender.kind is kind for sender in self.outbound)

    def sender(self, kind: SenderKind) -> Sender | None:
        """The declared sender of that kind, if any."""
        return next((s for s in self.outbound if s.kind is kind), None)

    @property
    def forwards_through_gateways(self) -> bool:
        """Mode forward on a stack with gateways and no ``inbound.mx``: the gateways are
        the MX and redirect the alias addresses to ``<db>.odoo.com`` with SRS."""
        return self.inbound.mode is InboundMode.FORWARD and bool(self.gateways) and not self.inbound.mx

    @property
    def gateways_receive(self) -> bool:
        """True when the gateways are the domain's MX (mode gateway, or forward through them)."""
        return self.inbound.mode is InboundMode.GATEWAY or self.forwards_through_gateways

    def inbound_domain(self, domain: str) -> str:
        """The alias domain Odoo receives on: the subdomain when one is declared."""
        if self.inbound.subdomain:
            return f"{self.inbound.subdomain}.{domain}"
        return domain
