"""STARTTLS as a sending MTA sees it, one MX address at a time: the certificate and
the chain the server sends, whether it verifies against a trust store with the MX
name (PKIX, what MTA-STS senders require), and whether the server still accepts
TLS 1.0 or 1.1 (RFC 8996 deprecates both).

The first session runs its handshake with pyOpenSSL (PyCA's binding): it hands over
the chain the server presented on every Python we support, where the standard
library's ``SSLSocket.get_unverified_chain`` exists only from 3.13 — and DANE-TA
(RFC 7672 §3.1.2) is judged on that chain. pyOpenSSL is imported when a probe runs,
not when the checks load.

Each question is its own SMTP session: after a failed handshake the session is dead.
The legacy-version probes pin the client to one version with OpenSSL's security level
0 — OpenSSL 3 otherwise refuses to *offer* TLS 1.0/1.1 at all (NO_CIPHERS_AVAILABLE,
raised before a byte is sent), which says nothing about the server and is reported
as ``untested``, never as "refused".
"""

from __future__ import annotations

import select
import smtplib
import socket
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from mailstack.checks.engine.context import SmtpOptions
from mailstack.checks.probes.smtp import _close, _connect, _quit

#: The versions a server must refuse, by the name reports use.
LEGACY = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1}
#: OpenSSL reasons that mean our side never offered the version.
_NOT_OFFERED = ("NO_CIPHERS_AVAILABLE", "NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL")


@dataclass(frozen=True, slots=True)
class TlsObservation:
    """What STARTTLS on one MX address showed; ``error`` when it could not run."""

    host: str
    address: str
    port: int
    leaf: bytes | None = None
    #: The chain the server presented (DER, leaf first, as sent; the leaf included).
    chain: tuple[bytes, ...] = ()
    version: str = ""
    #: None: the chain verified with the MX name; else OpenSSL's reason.
    pkix_error: str | None = None
    #: version name -> "refused: ...", "accepted: ..." or "untested: ..."
    legacy: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.host} [{self.address}]:{self.port}"


def _unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # DANE-EE needs no PKIX: read the certificate first
    return context


def _handshake(host: str, address: str, options: SmtpOptions, context: ssl.SSLContext) -> tuple[smtplib.SMTP, ssl.SSLSocket]:
    client, _ = _connect(address, options, host)
    try:
        client.ehlo(options.helo)
        if not client.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError("STARTTLS not offered")
        client.starttls(context=context)
    except BaseException:
        _close(client)
        raise
    assert isinstance(client.sock, ssl.SSLSocket)
    return client, client.sock


def probe(host: str, address: str, options: SmtpOptions, cafile: str | None) -> TlsObservation:
    """STARTTLS to ``address`` (MX ``host``): certificate and chain, PKIX, legacy versions."""
    from OpenSSL import SSL  # heavy: only when a probe runs

    try:
        chain, version = _presented(host, address, options)
    except (OSError, smtplib.SMTPException, SSL.Error) as err:
        return TlsObservation(host, address, options.port, error=f"STARTTLS failed: {err or type(err).__name__}")
    if not chain:
        return TlsObservation(host, address, options.port, error="STARTTLS failed: the server presented no certificate")
    return TlsObservation(host, address, options.port, chain[0], chain, version, _pkix(host, address, options, cafile),
                          {name: _legacy(host, address, options, v) for name, v in LEGACY.items()})


def _presented(host: str, address: str, options: SmtpOptions) -> tuple[tuple[bytes, ...], str]:
    """(the chain the server presented, DER leaf first; the TLS version) of one
    STARTTLS session, its handshake run by pyOpenSSL without verification (DANE-EE
    needs no PKIX; the checks judge the chain)."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from OpenSSL import SSL

    client, _ = _connect(address, options, host)
    try:
        client.ehlo(options.helo)
        if not client.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError("STARTTLS not offered")
        code, reply = client.docmd("STARTTLS")
        if code != 220:
            raise smtplib.SMTPResponseException(code, reply)
        assert client.sock is not None
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_verify(SSL.VERIFY_NONE)
        connection = SSL.Connection(context, client.sock)
        if host:
            connection.set_tlsext_host_name(host.encode("idna"))
        connection.set_connect_state()
        _drive(client.sock, connection.do_handshake, options.timeout)
        chain = connection.get_peer_cert_chain(as_cryptography=True) or []
        version = connection.get_protocol_version_name()
        try:
            connection.sendall(b"QUIT\r\n")
        except SSL.Error:
            pass
        return tuple(c.public_bytes(Encoding.DER) for c in chain), version
    finally:
        _close(client)


def _drive(sock: socket.socket, step: Callable[[], object], timeout: float) -> None:
    """Run a pyOpenSSL step on a socket with a timeout (Python keeps such a socket
    non-blocking, so OpenSSL asks to be called again when it can read or write)."""
    from OpenSSL import SSL

    while True:
        try:
            step()
            return
        except SSL.WantReadError:
            ready = select.select([sock], [], [], timeout)[0]
        except SSL.WantWriteError:
            ready = select.select([], [sock], [], timeout)[1]
        if not ready:
            raise TimeoutError(f"TLS handshake timed out after {timeout} s")


def _pkix(host: str, address: str, options: SmtpOptions, cafile: str | None) -> str | None:
    context = ssl.create_default_context(cafile=cafile)  # CERT_REQUIRED, hostname checked
    try:
        client, _ = _handshake(host, address, options, context)
    except ssl.SSLCertVerificationError as err:
        return f"{err.verify_message} (code {err.verify_code})"
    except (OSError, smtplib.SMTPException, ssl.SSLError) as err:
        return f"handshake failed: {err}"
    _quit(client)
    return None


def _legacy(host: str, address: str, options: SmtpOptions, version: ssl.TLSVersion) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1/TLSv1_1
        context = _unverified()
        context.minimum_version = context.maximum_version = version
        try:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        except ssl.SSLError as err:
            return f"untested: this OpenSSL cannot lower its security level ({err})"
    try:
        client, sock = _handshake(host, address, options, context)
    except ssl.SSLError as err:
        if err.reason in _NOT_OFFERED:
            return f"untested: this client could not offer it ({err.reason})"
        return f"refused: {err.reason or err}"
    except (OSError, smtplib.SMTPException) as err:
        return f"untested: the session failed before the handshake ({err})"
    negotiated = sock.version()
    _quit(client)
    return f"accepted: {negotiated}"
