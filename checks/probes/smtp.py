"""Talk SMTP to one MX address and record what it said, without ever sending DATA.

Two sessions per address: a plain one for the banner, EHLO and the RCPT probes (open
relay, unknown recipient, declared aliases — each transaction reset, no message sent),
and one that upgrades with STARTTLS to read the certificate. The result is an
``SmtpObservation`` the smtp checks judge without I/O.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field

from cryptography import x509

from mailstack.checks.engine.context import SmtpOptions
from mailstack.core import names
from mailstack.rules import dane

Reply = tuple[int, str]


@dataclass(frozen=True, slots=True)
class SmtpObservation:
    """What one MX address answered. ``error`` is set when the session could not run."""

    host: str
    address: str
    port: int
    banner: Reply | None = None
    ehlo: Reply | None = None
    starttls_offered: bool = False
    tls_error: str | None = None
    cert_names: tuple[str, ...] = ()
    relay: Reply | None = None
    unknown: Reply | None = None
    recipients: dict[str, Reply] = field(default_factory=dict)
    error: str | None = None
    #: MAIL FROM:<> refused: the RCPT probes could not run (the checks report error).
    mail_refused: Reply | None = None

    @property
    def where(self) -> str:
        return f"{self.host} [{self.address}]:{self.port}"


def _reply(code: int, message: bytes | str) -> Reply:
    text = message.decode(errors="replace") if isinstance(message, bytes) else message
    return code, " ".join(text.split())


def _connect(address: str, options: SmtpOptions, host: str = "") -> tuple[smtplib.SMTP, Reply]:
    client = smtplib.SMTP(timeout=options.timeout)
    code, message = client.connect(address, options.port)
    # smtplib's STARTTLS sends _host as SNI; connect() by address leaves it empty.
    client._host = host  # type: ignore[attr-defined]
    return client, _reply(code, message)


def probe(host: str, address: str, options: SmtpOptions, unknown: str, recipients: list[str]) -> SmtpObservation:
    """Run both sessions against ``address`` (the MX ``host``'s address)."""
    try:
        client, banner = _connect(address, options)
    except (OSError, smtplib.SMTPException) as err:
        return SmtpObservation(host, address, options.port, error=f"cannot connect: {err}")
    try:
        ehlo = _reply(*client.ehlo(options.helo))
        offered = client.has_extn("starttls")
        # The null reverse-path: every MTA must accept it (RFC 5321 §4.5.5, bounces), so
        # no sender-domain rule can refuse the probe before the RCPT we want to see.
        mail_refused = _mail_refused(client)
        relay = unknown_reply = None
        replies: dict[str, Reply] = {}
        if mail_refused is None:
            relay = _rcpt(client, options.relay_probe)
            unknown_reply = _rcpt(client, unknown)
            replies = {r: _rcpt(client, r) for r in recipients}
        _quit(client)
    except (OSError, smtplib.SMTPException) as err:
        _close(client)
        return SmtpObservation(host, address, options.port, banner=banner, error=f"session failed: {err}")
    tls_error, names = (None, ()) if not offered else _tls(host, address, options)
    return SmtpObservation(
        host, address, options.port, banner, ehlo, offered, tls_error, names, relay, unknown_reply, replies, mail_refused=mail_refused
    )


def _mail_refused(client: smtplib.SMTP) -> Reply | None:
    """MAIL FROM:<>; the reply when refused, None when accepted (then RSET)."""
    code, message = client.mail("")
    client.rset()
    return _reply(code, message) if code >= 400 else None


def _rcpt(client: smtplib.SMTP, recipient: str) -> Reply:
    """One transaction: MAIL FROM:<>, RCPT, RSET; the RCPT reply."""
    client.mail("")
    reply = _reply(*client.rcpt(recipient))
    client.rset()
    return reply


def _tls(host: str, address: str, options: SmtpOptions) -> tuple[str | None, tuple[str, ...]]:
    """STARTTLS and the certificate's names; chain trust is not judged here, only names."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        client, _ = _connect(address, options, host)
    except (OSError, smtplib.SMTPException) as err:
        return f"cannot connect: {err}", ()
    try:
        client.ehlo(options.helo)
        client.starttls(context=context)
        sock = client.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        client.ehlo(options.helo)
        _quit(client)
    except (OSError, smtplib.SMTPException, ssl.SSLError) as err:
        _close(client)
        return f"STARTTLS failed: {err}", ()
    if not der:
        return "no certificate presented", ()
    return None, certificate_names(der)


def certificate_names(der: bytes) -> tuple[str, ...]:
    """DNS names of a certificate: its subjectAltName dNSNames, else its CN."""
    return dane.certificate_names(x509.load_der_x509_certificate(der))


def name_matches(host: str, cert_names: tuple[str, ...]) -> bool:
    """RFC 6125 §6.4: exact match, or a wildcard standing for the whole leftmost label."""
    return any(names.wildcard_matches(name, host) for name in cert_names)


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        _close(client)


def _close(client: smtplib.SMTP) -> None:
    try:
        client.close()
    except OSError:
        pass



