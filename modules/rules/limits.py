"""Size limits of a mail domain's records, from the RFCs and the DNS providers, each
with the reason a user reads when a stack goes over it.

The config layer refuses a declaration over a limit at the key that sets it
(``mailstack:inbound.mx: 11 hosts, over the limit of 10 (...)``), before anything is
planned or provisioned; docs/configuration.md lists them. Limits that are not mail
rules (YAML nesting, file and string sizes) live with the reader, in
``mailstack.config``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailstack.core import txt
from mailstack.rules import dkim


@dataclass(frozen=True, slots=True)
class Limit:
    """A maximum and why it is there (shown in the error and in the docs)."""

    value: int
    reason: str

    def exceeded(self, count: int, what: str) -> str | None:
        """The message for ``count`` over the limit, None when within it."""
        if count <= self.value:
            return None
        return f"{count} {what}, over the limit of {self.value} ({self.reason})"


#: One TXT record on the wire (its character-strings, each with its length byte).
TXT_RDATA = Limit(4096, "Cloudflare's maximum record size is 4,096 bytes on the wire")
#: MX hosts of one name: own gateways or a provider's hosts.
MX_HOSTS = Limit(
    10,
    "senders try only the first few MX hosts (Postfix: smtp_mx_address_limit = 5); "
    "more only enlarge every MX answer",
)
#: Report URIs in one ``rua``/``ruf`` tag (DMARC) or TLS-RPT ``rua``.
REPORT_URIS = Limit(5, "RFC 7489 §6.2: receivers need only send to two; more are likely dropped")
#: Alias domains of one stack, each with its full record set (about 7 records).
ALIAS_DOMAINS = Limit(
    2000,
    "about 14,000 records, which Cloudflare's API (1,200 requests per 5 minutes) takes an "
    "hour to create; split a larger group into several stacks",
)
#: Local parts the gateways accept besides Odoo's own, on every relay domain.
INBOUND_ALIASES = Limit(
    500,
    "each is accepted on every relay domain: 2,000 domains x 500 aliases is a "
    "1,000,000-entry Postfix recipient map",
)
#: DNS blocklists asked per gateway address (``mailstack:checks.blocklists``).
BLOCKLISTS = Limit(20, "each list costs one query per gateway address and check run; receivers consult two or three")
#: A DNS name in text form (RFC 1035 §2.3.4: 255 octets on the wire).
NAME_LENGTH = Limit(253, "RFC 1035 §2.3.4: a DNS name is at most 255 octets on the wire")


def txt_rdata_size(value: str) -> int:
    """A TXT value's size on the wire: its bytes plus one length byte per
    character-string of at most 255 bytes (``mailstack.core.txt.split``)."""
    size = len(value.encode("utf-8"))
    return size + max(1, -(-size // txt.MAX_STRING))


def txt_problem(value: str, what: str) -> str | None:
    """The message when a TXT value does not fit one record, None when it does."""
    return TXT_RDATA.exceeded(txt_rdata_size(value), f"bytes in the {what} TXT record")


def dkim_name_problem(selector: str, domain: str) -> str | None:
    """The message when ``<selector>._domainkey.<domain>`` is too long a DNS name."""
    name = dkim.record_name(selector, domain)
    return NAME_LENGTH.exceeded(len(name), f"characters in the DKIM key name <selector>._domainkey.{domain}")
