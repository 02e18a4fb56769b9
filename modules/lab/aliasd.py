"""Run the rendered mailstack-aliasd for real, beside a lab Postfix.

The gateway's RCPT validation (``relay_recipient_maps = socketmap:…``) asks
mailstack-aliasd; the lab and the gateway tests run the same stdlib-only script the
gateway component copies to a host, with the rendered ``mailstack/aliasd.conf``, as
the mailgate's unprivileged user (``setpriv``), optionally inside a network namespace.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailstack.gateway.render import RenderedFile, aliasd_source
from mailstack.lab import users
from mailstack.lab.binaries import binary
from mailstack.lab.postfix import LabError, can_connect, mailgate_python, wait_for, write_files
from mailstack.lab.process import stop_child


@dataclass
class AliasDaemon:
    """mailstack-aliasd on ``workdir/mailstack/aliasd.conf``; stop it by PID."""

    workdir: Path
    files: Mapping[str, RenderedFile]
    netns: str | None = None
    #: The mailgate's user (``install_mailgate`` makes it own the Odoo password file).
    user: str = users.MAILGATE_USER
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mailstack" / "aliasd.conf"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def listen(self) -> tuple[str, int]:
        return listen_of(self.files["mailstack/aliasd.conf"].text, "aliasd.conf has no listen line")

    def start(self) -> None:
        # Only its own files: the mailgate's (mailstack/mailgate.conf) belong to the
        # mailgate's user, and its static list is Postfix's relay_recipients.
        conf = self.files["mailstack/aliasd.conf"]
        self.conf_path.parent.mkdir(parents=True, exist_ok=True)  # its mode stays the mailgate's (0700)
        self.conf_path.unlink(missing_ok=True)
        # 0600 (the user owns it below): like the mailgate's files, nobody else reads it.
        with os.fdopen(os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
            handle.write(conf.text)
            os.fchmod(handle.fileno(), 0o600)
        write_files({k: v for k, v in self.files.items() if k == "postfix/relay_recipients"}, self.workdir, "postfix")
        script = self.workdir / "mailstack" / "aliasd.py"
        script.write_text(aliasd_source(), encoding="utf-8")
        script.chmod(0o700)
        entry = pwd.getpwnam(self.user)
        for owned in (self.conf_path, script):  # the mailgate's user owns its files, as on a host
            os.chown(owned, entry.pw_uid, entry.pw_gid)
        command = [binary("setpriv"), f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
                   mailgate_python(), str(script), "--config", str(self.conf_path)]
        if self.netns:
            command = [binary("ip"), "netns", "exec", self.netns, *command]
        log = open(self.workdir / "aliasd.log", "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        log.close()
        host, port = self.listen()

        def ready() -> bool:
            if self.process and self.process.poll() is not None:
                raise LabError(f"mailstack-aliasd exited with {self.process.returncode}: see {self.workdir / 'aliasd.log'}")
            return can_connect(host, port, self.netns)

        wait_for(ready, 30, what=f"mailstack-aliasd on {host}:{port}")

    def stop(self) -> None:
        stop_child(self.process)
        self.process = None

    def __enter__(self) -> AliasDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def listen_of(conf_text: str, missing: str) -> tuple[str, int]:
    """(host, port) of the ``listen = host:port`` line of a rendered daemon configuration
    (aliasd.conf, mailgate.conf); LabError ``missing`` when it has none."""
    for line in conf_text.splitlines():
        if line.startswith("listen"):
            host, _, port = line.split("=", 1)[1].strip().rpartition(":")
            return host, int(port)
    raise LabError(missing)
