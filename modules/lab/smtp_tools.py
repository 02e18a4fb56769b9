"""SMTP from inside a lab namespace: a client that reports every reply, and a sink.

Lab servers may run in a network namespace the calling process is not in, so both
tools run as child processes (``ip netns exec NS python -m mailstack.lab.smtp_tools``)
when a namespace is given, and in-process otherwise.

* ``send(address, port, mail_from, recipients, data, netns=None)`` returns the reply
  code and text of MAIL, each RCPT and DATA (DATA only when a recipient was accepted),
  so a test can assert "rejected at RCPT" rather than "an exception happened".
* ``SmtpSink`` is a minimal receiving MTA (a recipient's MX, a relay host): it accepts
  everything and stores each message byte for byte (``N.eml``) with its envelope
  (``N.json``) in a directory.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import smtplib
import socketserver
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailstack.lab.binaries import binary
from mailstack.lab.postfix import LabError, wait_for
from mailstack.lab.process import stop_child

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


def send(address: str, port: int, mail_from: str, recipients: Sequence[str], data: bytes,
         netns: str | None = None, helo: str = "client.lab.test", timeout: float = 60,
         source: str | None = None, starttls: bool = False,
         auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """One SMTP transaction (from address ``source``, after STARTTLS and SMTP AUTH as
    ``auth`` = (user, password) when asked); returns ``{"ehlo": [extensions],
    "ehlo_tls": [extensions after STARTTLS], "auth": [code, text] | None, "mail":
    [code, text], "rcpt": {addr: [code, text]}, "data": [code, text] | None}``
    (``"error"`` when the connection failed). A refused AUTH ends the transaction
    there. The password travels to the namespaced child on stdin, never in argv."""
    request = {"address": address, "port": port, "mail_from": mail_from, "recipients": list(recipients),
               "data": base64.b64encode(data).decode(), "helo": helo, "timeout": timeout, "source": source,
               "starttls": starttls, "auth": list(auth) if auth else None}
    if netns is None:
        return _send(request)
    return dict(_in_namespace(netns, "send", request))


def _in_namespace(netns: str, action: str, request: dict[str, Any]) -> Any:
    """Run ``action`` of this module as a child inside ``netns``: the request (which may
    hold a password) goes on stdin as JSON, the result comes back as JSON on stdout."""
    result = subprocess.run(
        [binary("ip"), "netns", "exec", netns, sys.executable, "-m", "mailstack.lab.smtp_tools", action],
        input=json.dumps(request), capture_output=True, text=True, cwd=PROJECT_ROOT,
    )
    if result.returncode:
        raise LabError(f"smtp_tools {action}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def _send(request: dict[str, Any]) -> dict[str, Any]:
    outcome: dict[str, Any] = {"ehlo": [], "ehlo_tls": [], "auth": None, "mail": None, "rcpt": {}, "data": None}
    try:
        source = (request["source"], 0) if request.get("source") else None
        with smtplib.SMTP(request["address"], int(request["port"]), local_hostname=request["helo"],
                          timeout=request["timeout"], source_address=source) as client:
            client.ehlo()
            outcome["ehlo"] = sorted(client.esmtp_features)
            if request.get("starttls"):
                client.starttls()
                client.ehlo()
                outcome["tls"] = True
                outcome["ehlo_tls"] = sorted(client.esmtp_features)
            if request.get("auth"):
                user, password = request["auth"]
                try:
                    code, text = client.login(user, password)
                except smtplib.SMTPAuthenticationError as err:
                    error = err.smtp_error
                    outcome["auth"] = [err.smtp_code, error.decode(errors="replace") if isinstance(error, bytes) else error]
                    return outcome
                except smtplib.SMTPNotSupportedError:
                    outcome["auth"] = [None, "AUTH not offered"]
                    return outcome
                outcome["auth"] = [code, text.decode(errors="replace")]
            code, text = client.mail(request["mail_from"])
            outcome["mail"] = [code, text.decode(errors="replace")]
            if code >= 400:
                return outcome
            accepted = 0
            for recipient in request["recipients"]:
                code, text = client.rcpt(recipient)
                outcome["rcpt"][recipient] = [code, text.decode(errors="replace")]
                accepted += code < 400
            if accepted:
                code, text = client.data(base64.b64decode(request["data"]))
                outcome["data"] = [code, text.decode(errors="replace")]
    except (OSError, smtplib.SMTPException) as err:
        outcome["error"] = f"{type(err).__name__}: {err}"
    return outcome


def raw_session(address: str, port: int, chunks: Sequence[bytes], netns: str | None = None,
                source: str | None = None, timeout: float = 30) -> list[str]:
    """Send each chunk as is (no CRLF repair, no dot-stuffing) and read the reply
    after each; returns the replies. For protocol abuse tests (bare LF, smuggling)."""
    request = {"address": address, "port": port, "chunks": [base64.b64encode(c).decode() for c in chunks],
               "source": source, "timeout": timeout}
    if netns is None:
        return _raw_session(request)
    return list(_in_namespace(netns, "raw", request))


def _raw_session(request: dict[str, Any]) -> list[str]:
    import socket

    replies: list[str] = []
    source = (request["source"], 0) if request.get("source") else None
    with socket.create_connection((request["address"], int(request["port"])), timeout=request["timeout"], source_address=source) as sock:
        reader = sock.makefile("rb")

        def reply() -> str:
            lines = []
            while True:
                line = reader.readline()
                if not line:
                    break
                lines.append(line.decode(errors="replace").rstrip("\r\n"))
                if len(line) < 4 or line[3:4] != b"-":
                    break
            return "\n".join(lines)

        replies.append(reply())
        for chunk in request["chunks"]:
            try:
                sock.sendall(base64.b64decode(chunk))
            except OSError:
                break
            answer = reply()
            replies.append(answer)
            if not answer:
                break
    return replies


class _SinkHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        directory: Path = self.server.directory  # type: ignore[attr-defined]
        lock: threading.Lock = self.server.lock  # type: ignore[attr-defined]
        self.wfile.write(b"220 sink.lab.test ESMTP\r\n")
        mail_from, recipients = "", list[str]()
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250-sink.lab.test\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                mail_from, recipients = line.decode().split(":", 1)[1].strip().split()[0].strip("<>"), []
                self.wfile.write(b"250 ok\r\n")
            elif verb == b"RCPT":
                recipients.append(line.decode().split(":", 1)[1].strip().split()[0].strip("<>"))
                self.wfile.write(b"250 ok\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                body = bytearray()
                while True:
                    chunk = self.rfile.readline()
                    if not chunk or chunk == b".\r\n":
                        break
                    body += chunk[1:] if chunk.startswith(b"..") else chunk
                with lock:
                    number = len(list(directory.glob("*.eml"))) + 1
                    (directory / f"{number:04d}.json").write_text(json.dumps({"from": mail_from, "to": recipients}))
                    (directory / f"{number:04d}.eml").write_bytes(bytes(body))
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # RSET, NOOP, anything else
                self.wfile.write(b"250 ok\r\n")


class _SinkServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class SmtpSink:
    """A receiving MTA as a child process; ``messages()`` reads what it stored."""

    workdir: Path
    address: str
    port: int = 25
    netns: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def directory(self) -> Path:
        return self.workdir / "sink"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ready = self.directory / ".ready"
        ready.unlink(missing_ok=True)
        command = [sys.executable, "-m", "mailstack.lab.smtp_tools", "sink", "--listen", f"{self.address}:{self.port}", "--dir", str(self.directory)]
        if self.netns:
            command = [binary("ip"), "netns", "exec", self.netns, *command]
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, start_new_session=True)

        def started() -> bool:
            if self.process and self.process.poll() is not None:
                raise LabError(f"smtp sink exited with {self.process.returncode}")
            return ready.exists()

        wait_for(started, 30, what="the SMTP sink")

    def stop(self) -> None:
        stop_child(self.process)
        self.process = None

    def messages(self) -> list[tuple[dict[str, Any], bytes]]:
        """(envelope, raw bytes as received after DATA, CRLF line ends) per message."""
        return [
            (json.loads(path.with_suffix(".json").read_text()), path.read_bytes())
            for path in sorted(self.directory.glob("*.eml"))
            if path.with_suffix(".json").exists()
        ]

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smtp_tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("send", help="one transaction, JSON request on stdin, JSON result on stdout")
    sub.add_parser("raw", help="send raw chunks, JSON request on stdin, replies as JSON on stdout")
    sink = sub.add_parser("sink", help="accept and store every message")
    sink.add_argument("--listen", required=True)
    sink.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.command == "send":
        print(json.dumps(_send(json.loads(sys.stdin.read()))))
        return 0
    if args.command == "raw":
        print(json.dumps(_raw_session(json.loads(sys.stdin.read()))))
        return 0
    address, _, port = args.listen.rpartition(":")
    server = _SinkServer((address, int(port)), _SinkHandler)
    server.directory = args.dir  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    (args.dir / ".ready").write_text(str(os.getpid()))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
