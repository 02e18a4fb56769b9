"""Odoo's external API over XML-RPC: log in once, then ``execute_kw``.

One small client for everything mailstack asks Odoo (the Pulumi provider of Odoo's
mail settings, the ``odoo`` checks, the lab): ``/xmlrpc/2/common`` ``authenticate`` and
``/xmlrpc/2/object`` ``execute_kw(db, uid, password, model, method, args, kwargs)``,
each request bounded by a timeout. Failures come back as two exceptions that say what
happened without the password: ``OdooUnreachable`` (network, TLS, HTTP, not XML-RPC)
and ``OdooRefused`` (Odoo answered with a fault or refused the login), whose
``code`` is Odoo's fault code (1 error, 2 UserError/ValidationError, 3 AccessDenied,
4 AccessError) and whose ``message`` is the fault's last line.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import xmlrpc.client
from dataclasses import dataclass, field
from typing import Any

from mailstack.core.errors import MailstackError

DEFAULT_TIMEOUT = 30.0


class OdooError(MailstackError):
    """Odoo could not do what was asked."""


class OdooUnreachable(OdooError):
    """No XML-RPC answer from Odoo: down, refused, timeout, TLS, HTTP error, a proxy page."""


class OdooRefused(OdooError):
    """Odoo answered with a fault (or refused the login)."""

    def __init__(self, code: int, message: str, detail: str = "") -> None:
        self.code, self.message, self.detail = code, message, detail
        super().__init__(message)


class _Transport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


class _SafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPSConnection:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:500]


@dataclass
class OdooClient:
    """One Odoo database as one user; ``uid`` is found on first use."""

    url: str
    database: str
    login: str
    password: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    cafile: str | None = None
    uid: int | None = None

    def _proxy(self, service: str) -> xmlrpc.client.ServerProxy:
        endpoint = f"{self.url.rstrip('/')}/xmlrpc/2/{service}"
        transport: xmlrpc.client.Transport
        if endpoint.startswith("https://"):
            transport = _SafeTransport(self.timeout, ssl.create_default_context(cafile=self.cafile))
        else:
            transport = _Transport(self.timeout)
        return xmlrpc.client.ServerProxy(endpoint, transport=transport, allow_none=True)

    def _call(self, service: str, method: str, *args: Any) -> Any:
        try:
            return getattr(self._proxy(service), method)(*args)
        except xmlrpc.client.Fault as fault:
            # Fault 1 carries a traceback (its last line says it); 2-4 carry Odoo's message.
            text = _last_line(str(fault.faultString)) if fault.faultCode == 1 else " ".join(str(fault.faultString).split())[:500]
            raise OdooRefused(int(fault.faultCode), text.replace(self.password, "********") if self.password else text) from None
        except xmlrpc.client.ProtocolError as err:
            raise OdooUnreachable(f"{self.url}: HTTP {err.errcode} {err.errmsg}") from None
        except (TimeoutError, socket.timeout):
            raise OdooUnreachable(f"{self.url}: no answer within {self.timeout:g}s") from None
        except ssl.SSLError as err:
            raise OdooUnreachable(f"{self.url}: TLS failed: {err.reason or type(err).__name__}") from None
        except OSError as err:
            raise OdooUnreachable(f"{self.url}: {err.strerror or type(err).__name__}") from None
        except (http.client.HTTPException, xmlrpc.client.ResponseError, ValueError) as err:
            raise OdooUnreachable(f"{self.url}: the answer is not XML-RPC ({type(err).__name__})") from None

    def version(self) -> dict[str, Any]:
        """``common.version()``: Odoo's server version (no login needed)."""
        return dict(self._call("common", "version"))

    def authenticate(self) -> int:
        """The uid of ``login``; OdooRefused(3) when Odoo refuses the credentials."""
        if self.uid is None:
            uid = self._call("common", "authenticate", self.database, self.login, self.password, {})
            if not uid:
                raise OdooRefused(3, f"Odoo refused the login {self.login!r} on database {self.database!r}")
            self.uid = int(uid)
        return self.uid

    def call(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``execute_kw(db, uid, password, model, method, args, kwargs)``."""
        uid = self.authenticate()
        return self._call("object", "execute_kw", self.database, uid, self.password, model, method, list(args), kwargs)

    def search_read(self, model: str, domain: list[Any], fields: list[str], **kwargs: Any) -> list[dict[str, Any]]:
        return list(self.call(model, "search_read", domain, fields=fields, **kwargs))

    def param(self, key: str) -> str | None:
        """A system parameter (``ir.config_parameter``), None when unset."""
        value = self.call("ir.config_parameter", "get_param", key)
        return str(value) if value not in (False, None) else None
