"""The lab's recipient MTA: an SMTP server that records what it receives, with verdicts.

It stands for a mailbox provider on the far side of the gateway: it accepts mail for
its own domains only (no relay), authenticates each message with ``mailstack.lab.verdict``
(SPF, DKIM twice, DMARC) and writes the message and its verdict to a spool directory,
one ``<id>.eml`` plus ``<id>.json`` (written last, atomically: a JSON file means the
message is complete). Run as ``python -m mailstack.lab.recipient`` inside the lab's
network namespace, so its DNS is the lab's BIND.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailstack.core import names
from mailstack.lab.verdict import verify


def message_id(raw: bytes) -> str:
    """The Message-ID header of a raw message ('' when absent)."""
    import email.parser
    import email.policy

    header = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw).get("Message-ID", "")
    return str(header).strip()


class Recorder:
    """aiosmtpd handler: refuse foreign recipient domains, record and verify the rest."""

    def __init__(self, spool: Path, domains: Sequence[str]) -> None:
        self.spool = spool
        self.domains = {names.normalize(d) for d in domains}

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:  # noqa: N802
        domain = names.normalize(address.rsplit("@", 1)[-1])
        if domain not in self.domains:
            return "550 5.7.1 relay access denied: not a domain of this server"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, self.record, raw, session.peer[0], envelope.mail_from or "", session.host_name or "", list(envelope.rcpt_tos)
        )
        return "250 2.0.0 recorded"

    def record(self, raw: bytes, client_ip: str, mail_from: str, helo: str, rcpt_tos: list[str]) -> None:
        received = time.time()
        verdict = verify(raw, client_ip=client_ip, mail_from=mail_from, helo=helo)
        key = f"{int(received * 1000)}-{uuid.uuid4().hex[:12]}"
        (self.spool / f"{key}.eml").write_bytes(raw)
        entry = {
            "received_at": received,
            "client_ip": client_ip,
            "helo": helo,
            "mail_from": mail_from,
            "rcpt_tos": rcpt_tos,
            "message_id": message_id(raw),
            "verdict": verdict.as_json(),
        }
        temporary = self.spool / f".{key}.json.tmp"
        temporary.write_text(json.dumps(entry, indent=1), encoding="utf-8")
        os.replace(temporary, self.spool / f"{key}.json")


def received(spool: Path) -> list[dict[str, Any]]:
    """Every recorded message's entry (with ``path`` of its .eml), oldest first."""
    entries = []
    for path in sorted(spool.glob("*.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        entry["path"] = str(path.with_suffix(".eml"))
        entries.append(entry)
    return entries


def serve(address: str, port: int, spool: Path, domains: Sequence[str], ready_file: Path | None) -> None:
    """Run until SIGTERM/SIGINT; write ``ready_file`` once the port accepts mail."""
    from aiosmtpd.controller import Controller

    spool.mkdir(parents=True, exist_ok=True)
    controller = Controller(
        Recorder(spool, domains), hostname=address, port=port, server_hostname=f"mx.{domains[0]}", ready_timeout=10
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if ready_file is not None:
        ready_file.write_text(str(os.getpid()), encoding="ascii")
    try:
        stop.wait()
    finally:
        controller.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailstack.lab.recipient", description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--domain", action="append", required=True, help="a domain this server receives for")
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    serve(args.address, args.port, args.spool, args.domain, args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
