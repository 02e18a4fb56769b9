"""One IMAP session to the declared mailbox, as the ``imap`` checks need it: connect
(implicit TLS on 993 or STARTTLS on 143) with the certificate verified for the host
name, ``LOGIN`` as the declared user, ``EXAMINE`` (read-only: no flag changes, so Odoo
still fetches what is unseen) the folder and count its messages.

The password is ``mailstack:imapPassword``, from ``MAILSTACK_IMAP_PASSWORD`` or the
file named by ``MAILSTACK_IMAP_PASSWORD_FILE`` (never argv); ``MAILSTACK_IMAP_CAFILE``
names a CA bundle for private CAs (the lab's).
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from dataclasses import dataclass, replace

from mailstack.checks.probes.secret_env import secret_from_env
from mailstack.core.model import ImapMailbox


def password_from_env() -> str | None:
    """``MAILSTACK_IMAP_PASSWORD``, else the file ``MAILSTACK_IMAP_PASSWORD_FILE``
    (ValueError naming it when it cannot be read)."""
    return secret_from_env("MAILSTACK_IMAP_PASSWORD")


@dataclass(frozen=True, slots=True)
class ImapObservation:
    """What one session showed; ``stage`` is where it stopped ('' when it got through)."""

    address: str = ""
    tls_version: str = ""
    cipher: str = ""
    verified: bool = False
    tls_error: str = ""
    login_error: str = ""
    mailbox_error: str = ""
    messages: int = 0
    unseen: int = 0
    error: str = ""
    stage: str = ""


class _Imap(imaplib.IMAP4):
    """IMAP4 to ``address`` with ``host`` as the name TLS verifies (SNI)."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        self._address = address
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self._address, self.port), timeout)


class _ImapSsl(imaplib.IMAP4_SSL):
    def __init__(self, host: str, address: str, port: int, context: ssl.SSLContext, timeout: float) -> None:
        self._address = address
        super().__init__(host, port, ssl_context=context, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), timeout)
        context: ssl.SSLContext = self.ssl_context
        return context.wrap_socket(sock, server_hostname=self.host)


def probe(mailbox: ImapMailbox, address: str, password: str | None, *, cafile: str | None = None, timeout: float = 15.0) -> ImapObservation:
    """Connect, verify, log in and examine; never raises."""
    context = ssl.create_default_context(cafile=cafile)
    client: imaplib.IMAP4
    try:
        if mailbox.security == "ssl":
            client = _ImapSsl(mailbox.host, address, mailbox.port, context, timeout)
        else:
            client = _Imap(mailbox.host, address, mailbox.port, timeout)
            client.starttls(context)
    except ssl.SSLCertVerificationError as err:
        return ImapObservation(address, tls_error=f"certificate not valid for {mailbox.host}: {err.verify_message}", stage="tls")
    except ssl.SSLError as err:
        return ImapObservation(address, tls_error=f"TLS failed: {err.reason or err}", stage="tls")
    except imaplib.IMAP4.error as err:
        return ImapObservation(address, tls_error=f"STARTTLS refused: {err}", stage="tls")
    except OSError as err:
        return ImapObservation(address, error=f"cannot connect to {address}:{mailbox.port}: {err.strerror or type(err).__name__}", stage="connect")
    sock = client.sock
    tls = sock.version() if isinstance(sock, ssl.SSLSocket) else ""
    cipher = (sock.cipher() or ("",))[0] if isinstance(sock, ssl.SSLSocket) else ""
    base = ImapObservation(address, tls_version=tls or "", cipher=cipher or "", verified=True)
    try:
        if not password:
            return replace(base, login_error="no password: set MAILSTACK_IMAP_PASSWORD or MAILSTACK_IMAP_PASSWORD_FILE", stage="login")
        try:
            client.login(mailbox.user, password)
        except imaplib.IMAP4.error as err:
            return replace(base, login_error=str(err.args[0] if err.args else err).replace(password, "********"), stage="login")
        status, data = client.select(f'"{mailbox.folder}"', readonly=True)
        if status != "OK":
            return replace(base, mailbox_error=f"{mailbox.folder}: {data[0].decode(errors='replace') if data and data[0] else status}", stage="mailbox")
        messages = int(data[0] or 0)
        _, found = client.search(None, "UNSEEN")
        unseen = len(found[0].split()) if found and found[0] else 0
        client.close()
        return replace(base, messages=messages, unseen=unseen)
    except (OSError, imaplib.IMAP4.error) as err:
        return replace(base, error=f"IMAP session failed: {err}", stage="session")
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
