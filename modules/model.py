"""The typed declaration of a mail domain, and the Record value everything shares.

All classes are frozen and slotted: a MailDomain is built once by ``modules.config``
(which validates and coerces every value) and then only read, by the record plan, the
gateway renderer and the checks. Invalid objects are never constructed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from modules.gateway_settings import GatewaySettings
from modules.names import within


class Hosting(StrEnum):
    """Where Odoo runs: on Odoo's SaaS, on Odoo.sh, or on the user's own servers."""

    ONLINE = "online"
    SH = "sh"
    ONPREMISE = "onpremise"


class InboundMode(StrEnum):
    """How inbound mail reaches Odoo."""

    ODOO_MX = "odoo-mx"  # MX/CNAME of a subdomain to <db>.odoo.com (Online, Odoo.sh)
    GATEWAY = "gateway"  # MX to the own gateways, mailgate into Odoo
    FORWARD = "forward"  # mailboxes elsewhere forward to Odoo's alias addresses
    IMAP = "imap"  # Odoo's fetchmail polls a mailbox elsewhere
    NONE = "none"  # the domain receives no mail: null MX (RFC 7505)


class SenderKind(StrEnum):
    """Who may send mail for the domain; each kind has a profile in ``modules.senders``."""

    ODOO = "odoo"
    GATEWAY = "gateway"
    MAILJET = "mailjet"
    GOOGLE = "google"
    MICROSOFT = "microsoft"
    SPF = "spf"  # raw SPF terms, the escape hatch


@dataclass(frozen=True, slots=True, order=True)
class Record:
    """One DNS record as every part of mailstack sees it.

    ``name`` is the FQDN without trailing dot, lower case. ``content`` is the plain
    value: TXT unquoted and unsplit, MX/CNAME targets without trailing dot, MX priority
    kept apart in ``priority`` (None where it does not apply). Providers render their
    own wire or API forms from this (see ``modules.txt``).
    """

    name: str
    type: str
    content: str
    ttl: int
    priority: int | None = None
    #: What the record is for (spf, dkim, dmarc, mx, ...): lets policies and checks pick
    #: the rule that applies without re-parsing. Not part of the record's identity.
    purpose: str = field(default="", compare=False)
    #: The content is derived from the gateway's DKIM public key, which Pulumi generates.
    needs_gateway_key: bool = field(default=False, compare=False)

    @property
    def key(self) -> str:
        """A stable, unique identifier used for Pulumi resource names and diffs.

        Unique within a plan: a name holds at most one record of each type, except MX,
        where several hosts may share a priority (RFC 5321 §5.1 load sharing), so the
        MX key carries the target too.
        """
        suffix = f"-{self.priority}" if self.priority is not None else ""
        if self.type == "MX":
            suffix += f"-{self.content}"
        return f"{self.type.lower()}-{self.name}{suffix}"

    def as_json(self) -> dict[str, object]:
        """The documented JSON shape of ``mailstack records --format json``."""
        return {
            "name": self.name,
            "type": self.type,
            "content": self.content,
            "ttl": self.ttl,
            "priority": self.priority,
        }


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

    @property
    def saas(self) -> bool:
        """True when Odoo S.A. runs the servers (Online or Odoo.sh)."""
        return self.hosting in (Hosting.ONLINE, Hosting.SH)


@dataclass(frozen=True, slots=True)
class SshTarget:
    """How Pulumi reaches a gateway host; the private key comes as a Pulumi secret."""

    user: str = "root"
    port: int = 22
    host: str | None = None  # defaults to the gateway's ipv4


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


@dataclass(frozen=True, slots=True)
class Dkim:
    """The gateway's own DKIM key."""

    selector: str = "mailstack"
    bits: int = 2048


@dataclass(frozen=True, slots=True)
class Spf:
    """SPF options: the ``all`` term closing each record."""

    all: str = "~all"


@dataclass(frozen=True, slots=True)
class Dmarc:
    """DMARC tags (RFC 7489 §6.3)."""

    policy: str = "none"
    subdomain_policy: str | None = None
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    adkim: str = "r"
    aspf: str = "r"
    pct: int | None = None
    fo: str | None = None


@dataclass(frozen=True, slots=True)
class MtaSts:
    """MTA-STS (RFC 8461): the policy mode and its cache lifetime."""

    mode: str = "testing"
    max_age: int = 604800


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

    def zone_of(self, name: str) -> str:
        """The zone a name's records live in: an explicit alias zone, the main zone
        when the name is below it, else the name itself (an alias domain's own zone)."""
        for domain, zone in self.alias_zones:
            if within(name, domain):
                return zone
        if within(name, self.zone):
            return self.zone
        return name


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

    def inbound_domain(self, domain: str) -> str:
        """The alias domain Odoo receives on: the subdomain when one is declared."""
        if self.inbound.subdomain:
            return f"{self.inbound.subdomain}.{domain}"
        return domain
