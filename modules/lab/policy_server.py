"""The MTA-STS policy hosts of the lab: ``https://mta-sts.<domain>/.well-known/mta-sts.txt``.

RFC 8461 §3.3: a sender fetches the policy over HTTPS from ``mta-sts.<domain>`` with a
certificate valid for that name. ``python -m mailstack.lab.policy_server --config FILE
--ready-file FILE`` serves each domain's policy on port 443 of its own lab address,
with a certificate from the lab CA, so ``lab check`` fetches it with the CA as
``--ca-file`` like any sender would. The policy text is the one the plan's id was
computed from (``mailstack.rules.mta_sts.policy_text``); a wrong Host or path is a 404,
and nothing is redirected.
"""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import ssl
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

POLICY_PATH = "/.well-known/mta-sts.txt"
PORT = 443


def _handler(policies: dict[str, str]) -> type[http.server.BaseHTTPRequestHandler]:
    class Policy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            host = (self.headers.get("Host") or "").split(":")[0].lower()
            text = policies.get(host)
            if self.path != POLICY_PATH or text is None:
                self.send_error(404)
                return
            body = text.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Policy


def serve(config: dict[str, Any], ready_file: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config["cert"], config["key"])
    policies = {s["host"]: s["policy"] for s in config["servers"]}
    servers = []
    for entry in config["servers"]:
        server = http.server.ThreadingHTTPServer((entry["address"], entry.get("port", PORT)), _handler(policies))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready_file.write_text("ready\n", encoding="ascii")
    stop.wait()
    for server in servers:
        server.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailstack.lab.policy_server", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(json.loads(args.config.read_text(encoding="utf-8")), args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
