"""A rendered gateway for inbound mail in a network namespace of its own, and the
outside senders that feed it: shared by ``tests/test_inbound_delivery.py`` and
``benchmarks/inbound.py``.

The gateway is what a gateway host runs — Postfix, OpenDKIM, mailstack-aliasd and the
mailgate rendered by ``mailstack.gateway.render`` from a stack, started by the lab's
runners — with the Odoo stand-in behind it, every address on loopback inside the namespace (nothing
leaves it; its resolver points where nothing answers). Each outside sender is an SMTP
client with an address of its own, as mail from many MTAs arrives: the stack's
per-client rate limits stay at their defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack import plan
from mailstack.config.stack import from_config
from mailstack.gateway import render
from mailstack.lab import netns
from mailstack.lab.binaries import binary
from mailstack.lab.aliasd import AliasDaemon
from mailstack.lab.mailgated import MailgateDaemon
from mailstack.lab.odoo import OdooStandIn
from mailstack.lab.postfix import OpenDkim, PostfixInstance, install_mailgate, lab_layout, make_workdir
from mailstack.lab.tls import self_signed

ROOT = Path(__file__).resolve().parent.parent
GATEWAY, STANDIN = "127.0.114.10", "127.0.114.40"
#: The outside senders' addresses: 127.0.114.100 and up, one per SMTP client.
FIRST_SENDER = 100
PASSWORD = "inbound-odoo-password"
ALIASES = ("sales", "support", "info", "jobs")
#: The stand-in, OpenDKIM, mailstack-aliasd (RCPT TO checked against Odoo's aliases),
#: the resident mailgate (delivery lmtp only) and Postfix, in the order they start.
COMPONENTS = ("odoo", "opendkim", "aliasd", "mailgated", "postfix")

Server = OdooStandIn | OpenDkim | AliasDaemon | MailgateDaemon | PostfixInstance


def stack_config(workdir: Path, concurrency: int, delivery: str = "lmtp") -> dict[str, Any]:
    """The declaration: one domain, four aliases, the mailgate's concurrency and delivery."""
    cert, key = self_signed(["mx1.example.net"], days=30)
    tls = workdir / "tls"
    tls.mkdir(mode=0o755)
    (tls / "gateway.pem").write_bytes(cert)
    (tls / "gateway.key").touch(mode=0o600)
    (tls / "gateway.key").write_bytes(key)
    return {
        "domain": "example.net",
        "odoo": {"hosting": "onpremise", "url": f"http://{STANDIN}:8069", "database": "odoo"},
        "outbound": ["gateway"],
        "inbound": {"mode": "gateway", "aliases": list(ALIASES)},
        "gateways": [{"hostname": "mx1.example.net", "ipv4": "192.0.2.10"}],
        "dkim": {"selector": "inbound"},
        "gateway": {
            "tls": {"cert": str(tls / "gateway.pem"), "key": str(tls / "gateway.key")},
            "mailgate": {"passwordFile": str(workdir / "secret" / "odoo-password"), "timeout": 60,
                         "concurrency": concurrency, "delivery": delivery},
        },
    }


@dataclass
class Gateway:
    name: str
    workdir: Path
    standin: OdooStandIn
    opendkim: OpenDkim
    postfix: PostfixInstance
    #: The resident mailgate (None with delivery pipe).
    mailgated: MailgateDaemon | None = None

    def stored(self) -> list[str]:
        """The Message-Id of every message Odoo stored, duplicates kept."""
        return [str(m["message_id"]) for m in self.standin.messages()]

    def stored_ids(self) -> list[str]:
        """``stored()`` read cheaply (no message bytes, a read-only connection): the
        benchmark polls it, and reading every row's bytes while Odoo writes kept the
        stand-in's SQLite database locked (it answered "database is locked": a retry)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.standin.db_path}?mode=ro", uri=True, timeout=10)) as db:
            rows = db.execute("SELECT json_extract(data, '$.message_id') FROM records WHERE model = 'mail.message'")
            return [str(row[0]) for row in rows]

    def routed(self) -> dict[str, Counter[str]]:
        """How often Odoo routed each Message-Id to each alias. Odoo posts a message
        once per route (one record per alias it names); a message processed twice
        would show a count of 2."""
        routes: dict[str, Counter[str]] = {}
        for stored in self.standin.messages():
            counter = routes.setdefault(str(stored["message_id"]), Counter())
            counter.update(route for route in str(stored["routes"]).split(",") if route)
        return routes

    def send(self, messages: int, connections: int, first: int = 0) -> dict[str, Any]:
        """Run ``send_all`` inside the namespace: {"started", "accepted", "failures"}."""
        return self.send_async(messages, connections, first)()

    def send_async(self, messages: int, connections: int, first: int = 0) -> Callable[[], dict[str, Any]]:
        """Start ``send_all`` inside the namespace; the function returned waits for its
        result ({"started", "accepted", "failures"})."""
        out = self.workdir / f"sent-{time.monotonic_ns()}.json"
        process = subprocess.Popen([binary("ip"), "netns", "exec", self.name, sys.executable, "-m", "tests.inbound_gateway",
                                    str(first), str(messages), str(connections), str(out)], cwd=ROOT)

        def result() -> dict[str, Any]:
            try:
                code = process.wait(900)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            if code:
                raise subprocess.CalledProcessError(code, process.args)
            sent: dict[str, Any] = json.loads(out.read_text())
            return sent

        return result


def _nothing(component: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


@contextmanager
def inbound_gateway(prefix: str, concurrency: int,
                    around: Callable[[str], AbstractContextManager[None]] = _nothing,
                    mailgate_prefix: tuple[str, ...] = (), delivery: str = "lmtp") -> Iterator[Gateway]:
    """The gateway of ``stack_config`` running in namespace ``<prefix>-<pid>``;
    ``around(component)`` wraps each component's start and ``mailgate_prefix`` goes in
    front of the pipe mailgate's argv in master.cf (the benchmark's CPU accounting)."""
    name = f"{prefix}-{os.getpid()}"
    workdir = make_workdir(f"{prefix}-")
    started: list[Server] = []
    try:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
        layout = lab_layout(workdir, GATEWAY)
        layout = dataclasses.replace(layout, mailgate_command=(*mailgate_prefix, *layout.mailgate_command))
        files = render.render(plan.build(from_config(stack_config(workdir, concurrency, delivery))),
                              dkim_private_key_pem=private_pem, layout=layout)
        netns.create(name, nameserver="127.0.114.53")  # nothing answers there: no lookups leave
        standin = OdooStandIn(workdir / "odoo", STANDIN, 8069, password=PASSWORD, netns=name,
                              aliases=[f"{a}@example.net" for a in ALIASES])
        opendkim = OpenDkim(workdir, files, netns=name)
        postfix = PostfixInstance(workdir, files, netns=name)
        install_mailgate(files, workdir, PASSWORD)
        (workdir / "secret").chmod(0o755)
        aliasd = AliasDaemon(workdir, files, netns=name)
        mailgated = MailgateDaemon(workdir, files, netns=name) if render.uses_mailgated(files) else None
        servers: dict[str, Server | None] = {"odoo": standin, "opendkim": opendkim, "aliasd": aliasd, "mailgated": mailgated, "postfix": postfix}
        for component in COMPONENTS:
            server = servers[component]
            if server is None:
                continue
            with around(component):
                server.start()
            started.append(server)
        yield Gateway(name, workdir, standin, opendkim, postfix, mailgated)
    finally:
        for server in reversed(started):
            server.stop()
        netns.delete(name)
        shutil.rmtree(workdir, ignore_errors=True)


def recipients_of(index: int) -> list[str]:
    """One alias; every tenth message also Bcc's a second one (one delivery to Odoo)."""
    first = f"{ALIASES[index % len(ALIASES)]}@example.net"
    return [first, f"{ALIASES[(index + 1) % len(ALIASES)]}@example.net"] if index % 10 == 0 else [first]


def message_id(index: int) -> str:
    return f"<inbound-{index}@outside.test>"


def message(index: int) -> bytes:
    return (
        f"From: Customer {index} <customer{index}@outside.test>\r\n"
        f"To: {recipients_of(index)[0]}\r\n"
        f"Subject: order {index}\r\n"
        f"Message-Id: {message_id(index)}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "Hello, this is a customer writing about an order.\r\n" * 20
    ).encode()


def send_all(first: int, messages: int, connections: int) -> dict[str, Any]:
    """(Inside the namespace.) ``connections`` clients, each from its own address and
    over one session, send messages first..first+messages-1 between them; the time
    each was accepted (250 after DATA) by Message-Id, and what was refused."""
    accepted: dict[str, float] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        source = (f"127.0.114.{FIRST_SENDER + number}", 0)
        with smtplib.SMTP(GATEWAY, 25, source_address=source, timeout=120) as smtp:
            smtp.ehlo(f"mta{number}.outside.test")
            for index in range(first + number, first + messages, connections):
                try:
                    smtp.sendmail(f"customer{index}@outside.test", recipients_of(index), message(index))
                except smtplib.SMTPException as err:
                    with lock:
                        failures.append(f"{index}: {err}")
                    continue
                with lock:
                    accepted[message_id(index)] = time.time()

    started = time.time()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(client, range(connections)))
    return {"started": started, "accepted": accepted, "failures": failures}


if __name__ == "__main__":
    start, count, clients, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    path.write_text(json.dumps(send_all(start, count, clients)))
