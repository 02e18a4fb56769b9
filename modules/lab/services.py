"""The simulated third parties' mail servers, as one process in the lab's namespace.

``python -m mailstack.lab.services --config FILE --ready-file FILE`` starts, for each
entry of the configuration (``mailstack.lab.thirdparty.Simulation``):

* a *relay* on port 587 of the service's sending host: it accepts a message as the
  service's submission endpoint does, signs it the way the service does (dkimpy,
  ``d=`` the From domain, the service's selector and lab key), rewrites the envelope
  sender where the service does (Mailjet's bounce domain), and delivers it at once to
  the recipient domain's MX from the service's own address, answering the submitter
  with the receiver's reply — so a probe learns at once whether it was accepted;
* an Odoo SaaS inbound server on port 25 of ``<db>.odoo.com``: it accepts the inbound
  subdomain's mail for the addresses Odoo has and hands each message, with one
  ``Delivered-To`` per recipient, to the Odoo stand-in's ``message_process`` (as Odoo's
  own mail servers deliver into the database).

These stand for other people's servers; the verdicts about what they send come from
the independent receiver, never from here.
"""

from __future__ import annotations

import argparse
import asyncio
import email.parser
import email.policy
import email.utils
import hashlib
import json
import signal
import smtplib
import ssl
import sys
import threading
import xmlrpc.client
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dkim
import dns.exception
import dns.resolver

SIGNED_HEADERS = [b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
                  b"content-transfer-encoding", b"reply-to", b"in-reply-to", b"references"]


def _from_domain(raw: bytes) -> str | None:
    header = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw).get_all("From") or []
    addresses = email.utils.getaddresses([str(h) for h in header])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        return None
    return addresses[0][1].rsplit("@", 1)[1].lower()


def _mx_addresses(domain: str, ipv6: bool) -> list[str]:
    answer = dns.resolver.resolve(domain, "MX", lifetime=10)
    hosts = [str(r.exchange).rstrip(".") for r in sorted(answer, key=lambda r: r.preference)]
    found = []
    for host in hosts:
        try:
            found += [str(a) for a in dns.resolver.resolve(host, "AAAA" if ipv6 else "A", lifetime=10)]
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
    return found


class RelayHandler:
    """A simulated service's submission endpoint (aiosmtpd handler)."""

    def __init__(self, relay: dict[str, Any]) -> None:
        self.relay = relay
        key_file = relay.get("key_file")
        self.key = Path(key_file).read_bytes() if key_file else None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.send, envelope.mail_from or "", list(envelope.rcpt_tos), raw)

    def sign(self, raw: bytes) -> bytes:
        domain = _from_domain(raw)
        if self.key is None or domain is None:
            return raw
        signature = dkim.sign(raw, self.relay["selector"].encode(), domain.encode(), self.key,
                              canonicalize=(b"relaxed", b"relaxed"), include_headers=SIGNED_HEADERS)
        return bytes(signature) + raw

    def send(self, mail_from: str, recipients: list[str], raw: bytes) -> str:
        relay = self.relay
        if relay.get("bounce_domain"):
            tag = hashlib.sha256(mail_from.encode()).hexdigest()[:12]
            mail_from = f"bounce+{tag}@{relay['bounce_domain']}"
        signed = self.sign(raw)
        ipv6 = ":" in relay["source"]
        reply = "250 2.0.0 sent"
        for domain in sorted({r.rsplit("@", 1)[1].lower() for r in recipients}):
            wanted = [r for r in recipients if r.lower().endswith("@" + domain)]
            try:
                addresses = _mx_addresses(domain, ipv6)
            except dns.exception.DNSException as err:
                return f"451 4.4.3 {domain}: MX lookup failed: {err}"
            if not addresses:
                return f"550 5.1.2 {domain} has no reachable MX"
            try:
                with smtplib.SMTP(addresses[0], 25, local_hostname=relay["helo"], source_address=(relay["source"], 0), timeout=60) as client:
                    refused = client.sendmail(mail_from, wanted, signed)
            except smtplib.SMTPResponseException as err:
                text = err.smtp_error.decode(errors="replace") if isinstance(err.smtp_error, bytes) else str(err.smtp_error)
                return f"{err.smtp_code} {text}"
            except (OSError, smtplib.SMTPException) as err:
                return f"451 4.4.1 {domain}: {type(err).__name__}: {err}"
            if refused:
                return f"550 5.1.1 refused by {domain}: {', '.join(refused)}"
        return reply


class SaasInboundHandler:
    """``<db>.odoo.com`` receiving for the Odoo database (aiosmtpd handler)."""

    def __init__(self, saas: dict[str, Any]) -> None:
        self.saas = saas
        self.accept = {a.lower() for a in saas["accept"]}
        self.password = Path(saas["password_file"]).read_text(encoding="utf-8").strip()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:  # noqa: N802
        local, _, domain = address.lower().rpartition("@")
        if f"{local.partition('+')[0]}@{domain}" not in self.accept:
            return "550 5.1.1 unknown recipient"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        # What the final MTA adds on delivery (Postfix's pipe flags R and D): the envelope
        # sender as Return-Path, each recipient as Delivered-To.
        delivered = f"Return-Path: <{envelope.mail_from}>\r\n".encode()
        delivered += b"".join(f"Delivered-To: {r}\r\n".encode() for r in envelope.rcpt_tos)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.deliver, delivered + raw)

    def deliver(self, raw: bytes) -> str:
        saas = self.saas
        url = saas["odoo_url"].rstrip("/")
        try:
            uid = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/common").authenticate(saas["database"], saas["login"], self.password, {})
            result = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/object").execute_kw(
                saas["database"], uid, self.password, "mail.thread", "message_process", [False, xmlrpc.client.Binary(raw)], {},
            )
        except xmlrpc.client.Fault as err:
            return f"550 5.7.1 Odoo refused the message: {str(err.faultString).strip().splitlines()[-1][:200]}"
        except (OSError, xmlrpc.client.ProtocolError) as err:
            return f"451 4.3.0 Odoo is unreachable: {err}"
        return f"250 2.0.0 processed by Odoo ({result!r})"


def serve(config: dict[str, Any], ready_file: Path) -> None:
    from aiosmtpd.controller import Controller

    controllers = []
    for relay in config["relays"]:
        controllers.append(Controller(RelayHandler(relay), hostname=relay["listen"], port=relay["port"],
                                      server_hostname=relay["helo"], ready_timeout=10))
    for saas in config["saas"]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # as Microsoft's and Google's MX (RFC 8996)
        context.load_cert_chain(saas["cert"], saas["key"])
        controllers.append(Controller(SaasInboundHandler(saas), hostname=saas["listen"], port=saas["port"],
                                      server_hostname=saas["hostname"], ready_timeout=10, tls_context=context))
    for controller in controllers:
        controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready_file.write_text("ready\n", encoding="ascii")
    try:
        stop.wait()
    finally:
        for controller in controllers:
            controller.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailstack.lab.services", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(json.loads(args.config.read_text(encoding="utf-8")), args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
