"""Fetch an MTA-STS policy over HTTPS (RFC 8461 §3.3), resolving through our resolver.

``https://mta-sts.<domain>/.well-known/mta-sts.txt``: the host name is resolved with the
check run's resolver (so ``--nameserver`` applies here too), the TLS certificate must be
valid for ``mta-sts.<domain>`` (RFC 8461 §3.3: a policy host with an invalid certificate
has no policy), redirects are not followed, and the media type should be text/plain.
The response's ``Last-Modified`` (RFC 9110 §8.8.2: a static server sends the file's
modification time) says since when the policy is as served.
"""

from __future__ import annotations

import email.utils
import http.client
import socket
import ssl
from dataclasses import dataclass

from mailstack.checks.dns.resolver import DnsError, Resolver

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_BODY = 64 * 1024  # RFC 8461 §3.3: senders may limit the policy size; 64 KiB is generous


@dataclass(frozen=True, slots=True)
class PolicyFetch:
    """The outcome of fetching one domain's policy.

    ``error`` is set when the policy could not be fetched for a reason on our side or
    the network's (DNS, connection); ``problem`` when the server answered wrongly
    (certificate, HTTP status, redirect) — a decided failure.
    """

    url: str
    text: str | None = None
    content_type: str = ""
    error: str | None = None
    problem: str | None = None
    #: The policy's ``Last-Modified`` (seconds since 1970), when the server sent a valid one.
    last_modified: float | None = None


class _Connection(http.client.HTTPSConnection):
    """HTTPS to a given address, with SNI and certificate checks for the policy host."""

    def __init__(self, host: str, address: str, port: int, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self._address = address
        self._context = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def fetch(resolver: Resolver, domain: str, *, port: int = 443, cafile: str | None = None, timeout: float = 10.0) -> PolicyFetch:
    """GET the policy of ``domain``; never raises for network or server trouble."""
    host = f"mta-sts.{domain}"
    url = f"https://{host}{POLICY_PATH}" if port == 443 else f"https://{host}:{port}{POLICY_PATH}"
    try:
        addresses = resolver.addresses(host)
    except DnsError as err:
        return PolicyFetch(url, error=f"DNS error: {err}")
    if not addresses:
        return PolicyFetch(url, problem=f"{host} has no A or AAAA record")
    context = ssl.create_default_context(cafile=cafile)
    connection = _Connection(host, addresses[0], port, context, timeout)
    try:
        connection.request("GET", POLICY_PATH, headers={"Host": host, "User-Agent": "mailstack-check"})
        response = connection.getresponse()
        body = response.read(MAX_BODY + 1)
    except ssl.SSLCertVerificationError as err:
        return PolicyFetch(url, problem=f"the certificate of {host} is not valid: {err.verify_message}")
    except (OSError, http.client.HTTPException) as err:
        return PolicyFetch(url, error=f"cannot fetch from {addresses[0]}:{port}: {err}")
    finally:
        connection.close()
    if response.status != 200:
        return PolicyFetch(url, problem=f"HTTP {response.status} {response.reason} (redirects are not followed)")
    if len(body) > MAX_BODY:
        return PolicyFetch(url, problem=f"the policy is larger than {MAX_BODY} bytes")
    return PolicyFetch(url, body.decode("utf-8", "replace"), response.getheader("Content-Type", ""),
                       last_modified=http_date(response.getheader("Last-Modified")))


def http_date(value: str | None) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7) as seconds since 1970; None when absent or not a date."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None
