"""Run the rendered postsrsd for real (``inbound.mode: forward`` through the gateways).

The gateway's ``postsrsd/postsrsd`` file is Debian's ``/etc/default/postsrsd``; here
its variables are handed to ``postsrsd -e`` (read them from the environment) in the
foreground, with a secret of the lab's own (0600) in place of ``/etc/postsrsd.secret``,
inside the gateway's network namespace, and stopped by PID.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailstack.gateway.render import RenderedFile
from mailstack.lab.binaries import binary
from mailstack.lab.postfix import LabError, can_connect, wait_for
from mailstack.lab.process import stop_child


@dataclass
class Postsrsd:
    """postsrsd on the rendered settings; ``secret_path`` replaces SRS_SECRET."""

    workdir: Path
    files: Mapping[str, RenderedFile]
    netns: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def settings(self) -> dict[str, str]:
        lines = self.files["postsrsd/postsrsd"].text.splitlines()
        values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
        secret = self.workdir / "postsrsd.secret"
        if not secret.exists():
            secret.touch(mode=0o600)
            secret.write_text(base64.b64encode(os.urandom(24)).decode() + "\n")
        return {**values, "SRS_SECRET": str(secret)}

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        values = self.settings()
        # -e reads every setting but the listen address from the environment (postsrsd
        # 1.10: SRS_LISTEN_ADDR is only what Debian's unit passes as -l).
        command = [binary("postsrsd"), "-e", "-4", f"-l{values['SRS_LISTEN_ADDR']}"]
        if self.netns:
            command = [binary("ip"), "netns", "exec", self.netns, *command]
        log = open(self.workdir / "postsrsd.log", "ab")
        self.process = subprocess.Popen(command, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **values}, stdout=log, stderr=log,
                                        start_new_session=True)
        log.close()
        host, port = values["SRS_LISTEN_ADDR"], int(values["SRS_FORWARD_PORT"])

        def ready() -> bool:
            if self.process and self.process.poll() is not None:
                raise LabError(f"postsrsd exited with {self.process.returncode}: see {self.workdir / 'postsrsd.log'}")
            return can_connect(host, port, self.netns)

        wait_for(ready, 30, what=f"postsrsd on {host}:{port}")

    def stop(self) -> None:
        stop_child(self.process)
        self.process = None

    def __enter__(self) -> Postsrsd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
