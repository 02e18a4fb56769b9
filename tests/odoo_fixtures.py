"""An in-process Odoo stand-in for tests: ``OdooHarness.call`` goes through the same
XML-RPC marshalling as the HTTP server (``Odoo.respond``), so faults, ``None`` and
many2one values come back exactly as a client of Odoo sees them; the mail Odoo sends
goes to a real SMTP sink on this engineer's loopback range (127.0.113.0/24)."""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailstack.lab.odoo.orm import Store
from mailstack.lab.odoo.process import seed
from mailstack.lab.odoo.server import Odoo, Settings
from mailstack.lab.smtp_tools import SmtpSink
from tests.ports import free_port

SINK_ADDRESS = "127.0.113.25"
PASSWORD = "standin-pw"


class OdooHarness:
    """One stand-in database and a client for it."""

    def __init__(self, path: Path, sink_port: int, *, aliases: tuple[str, ...] = ("sales@example.net",),
                 domains: tuple[str, ...] = (), partners: tuple[str, ...] = ()) -> None:
        config = Settings(password=PASSWORD, smtp_server=SINK_ADDRESS, smtp_port=sink_port, hostname="odoo.example.net")
        self.odoo = Odoo(Store(path), config)
        seed(self.odoo, "Example Co", domains, aliases, partners)

    def call(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``execute_kw`` through Odoo's marshalling; a fault is raised as xmlrpc.client.Fault."""
        body = xmlrpc.client.dumps(("odoo", 2, PASSWORD, model, method, list(args), kwargs), "execute_kw", allow_none=True)
        response = self.odoo.respond("object", body.encode())
        return xmlrpc.client.loads(response, use_builtin_types=False)[0][0]

    def process(self, raw: bytes) -> Any:
        """``mail.thread.message_process(False, raw)`` as the mailgate calls it."""
        return self.call("mail.thread", "message_process", False, xmlrpc.client.Binary(raw))

    def messages(self) -> list[dict[str, Any]]:
        return self.odoo.store.messages()

    def outbox(self) -> list[dict[str, Any]]:
        return self.odoo.store.outbox()


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpSink]:
    server = SmtpSink(tmp_path_factory.mktemp("sink"), SINK_ADDRESS, free_port(SINK_ADDRESS))
    with server:
        yield server


def mail(to: str = "sales@example.net", *, message_id: str = "<m1@outside.test>", sender: str = "Customer <customer@outside.test>",
         extra: str = "", subject: str = "Quote", body: str = "Hello") -> bytes:
    """A plain inbound message (LF line ends, as Postfix's pipe hands it over)."""
    headers = f"Return-Path: <{sender.split('<')[-1].rstrip('>')}>\nFrom: {sender}\nTo: {to}\nSubject: {subject}\nMessage-Id: {message_id}\n{extra}"
    return f"{headers}\n{body}\n".encode()
