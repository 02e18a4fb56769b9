"""Run the rendered resident mailgate (mailstack-mailgated) for real, beside a lab Postfix.

With ``gateway.mailgate.delivery: lmtp`` (the default) Postfix's ``odoo`` transport
is LMTP to mailstack-mailgated; the lab and the gateway tests run the same two
stdlib-only scripts the gateway component copies to a host (``mailgated.py`` beside
``mailgate.py``), on the rendered ``mailstack/mailgate.conf``, as the mailgate's
unprivileged user (``setpriv``), optionally inside a network namespace — what the
systemd unit does on a host.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailstack.gateway.render import RenderedFile, mailgate_source, mailgated_source
from mailstack.lab import users
from mailstack.lab.aliasd import listen_of
from mailstack.lab.binaries import binary
from mailstack.lab.postfix import LabError, can_connect, mailgate_python, wait_for
from mailstack.lab.process import stop_child


@dataclass
class MailgateDaemon:
    """mailstack-mailgated on ``workdir/mailstack/mailgate.conf``; stop it by PID.

    The mailgate's files (its config and password file) are installed by the caller
    (``install_mailgate``, or the gateway role), as for the pipe."""

    workdir: Path
    files: Mapping[str, RenderedFile]
    netns: str | None = None
    user: str = users.MAILGATE_USER
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mailstack" / "mailgate.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mailgated.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def listen(self) -> tuple[str, int]:
        return listen_of(self.files["mailstack/mailgate.conf"].text, "mailgate.conf has no listen line: the stack delivers by pipe")

    def start(self) -> None:
        directory = self.workdir / "mailstack"
        entry = pwd.getpwnam(self.user)
        for name, text in (("mailgate.py", mailgate_source()), ("mailgated.py", mailgated_source())):
            script = directory / name  # the mailgate's user owns its files, as on a host
            script.unlink(missing_ok=True)
            script.write_text(text, encoding="utf-8")
            script.chmod(0o700)
            os.chown(script, entry.pw_uid, entry.pw_gid)
        command = [binary("setpriv"), f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
                   mailgate_python(), "-I", "-S", str(directory / "mailgated.py"), "--config", str(self.conf_path)]
        if self.netns:
            command = [binary("ip"), "netns", "exec", self.netns, *command]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        host, port = self.listen()

        def ready() -> bool:
            if self.process and self.process.poll() is not None:
                raise LabError(f"mailstack-mailgated exited with {self.process.returncode}: see {self.log_path}")
            return can_connect(host, port, self.netns)

        wait_for(ready, 30, what=f"mailstack-mailgated on {host}:{port}")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill: no reply to deliveries in flight."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        stop_child(self.process)
        self.process = None

    def __enter__(self) -> MailgateDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
