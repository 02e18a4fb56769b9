"""Run a private, authoritative BIND (named) on a loopback address.

Zones are written from ``Record`` values through ``mailstack.core.zonefile`` (plus raw lines
for deliberately broken fixtures), or from a whole zone file (a seed zone), so a zone
served here is byte for byte what the plan or the seed says. Dynamic zones accept RFC
2136 updates and zone transfers signed with their TSIG key. The server runs in
the foreground as a child process (optionally inside a network namespace) and is
stopped by PID; nothing survives ``stop()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from mailstack.core import names, zonefile
from mailstack.core.errors import MailstackError
from mailstack.core.record import Record
from mailstack.lab import dnssec
from mailstack.lab import netns as netns_tools
from mailstack.lab.binaries import binary
from mailstack.lab.process import stop_child


@dataclass
class _Zone:
    origin: str
    lines: list[str]
    dynamic: bool
    update_key: str | None
    #: Signed by named itself with the lab's ``dnssec-policy`` (``mailstack.lab.dnssec``).
    signed: bool = False


@dataclass
class _Key:
    name: str
    algorithm: str
    secret: str


@dataclass
class BindServer:
    """One authoritative named on ``address:port``; configure, then ``start()``."""

    workdir: Path
    address: str = "127.0.0.1"
    port: int = 53
    netns: str | None = None
    zones: dict[str, _Zone] = field(default_factory=dict)
    keys: dict[str, _Key] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    soa_serial: int = 1
    added_address: bool = False
    #: Send named's stderr to this file and start it in its own session, so it keeps
    #: running after the starting process exits (``mailstack lab up``).
    stderr_path: Path | None = None
    #: The one NS name of every zone (its A record served by whoever holds that name);
    #: None: each zone's own ``ns1.<zone>`` with a glue A record.
    nameserver: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "named.log"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "named.conf"

    def add_tsig_key(self, name: str, algorithm: str, secret_b64: str) -> None:
        """Declare a TSIG key (RFC 8945) that may update dynamic zones."""
        self.keys[name] = _Key(name, algorithm, secret_b64)

    def add_zone(
        self,
        origin: str,
        records: Iterable[Record] | None = None,
        extra_lines: Iterable[str] = (),
        dynamic: bool = False,
        update_key: str | None = None,
        signed: bool = False,
    ) -> None:
        """Serve ``origin`` with the given records and raw zone-file lines; ``signed``:
        named signs it (dnssec-policy; a served parent gets its DS, ``ds_lines``).

        ``extra_lines`` are relative to the origin (``$ORIGIN`` is set), for fixtures
        the plan would refuse to produce. A dynamic zone accepts updates signed with
        ``update_key`` (default: every declared key).
        """
        origin = names.normalize(origin)
        nameserver = self.nameserver or f"ns1.{origin}"
        lines = [
            f"$ORIGIN {origin}.",
            "$TTL 300",
            f"@ 300 IN SOA {nameserver}. hostmaster.{origin}. {self.soa_serial} 3600 600 86400 60",
            f"@ 300 IN NS {nameserver}.",
        ]
        if self.nameserver is None:
            lines.append(f"ns1.{origin}. 300 IN A {self.address}")
        lines += zonefile.lines(records or ())
        lines += list(extra_lines)
        self.zones[origin] = _Zone(origin, lines, dynamic, update_key, signed)

    def add_zone_file(self, origin: str, text: str, dynamic: bool = False, update_key: str | None = None, signed: bool = False) -> None:
        """Serve ``origin`` from a whole zone file's text (a seed zone, as given)."""
        origin = names.normalize(origin)
        self.zones[origin] = _Zone(origin, text.splitlines(), dynamic, update_key, signed)

    def replace_zone(self, origin: str, records: Iterable[Record] | None = None, extra_lines: Iterable[str] = ()) -> None:
        """Rewrite a static zone with new content and reload (a bumped SOA serial)."""
        zone = self.zones[names.normalize(origin)]
        self.soa_serial += 1
        self.add_zone(zone.origin, records, extra_lines, zone.dynamic, zone.update_key, zone.signed)
        if self.process:
            self.reload()

    def _config(self) -> str:
        work = self.workdir
        parts = [
            "options {",
            f'  directory "{work}";',
            f'  pid-file "{work}/named.pid";',
            f'  session-keyfile "{work}/session.key";',
            f'  managed-keys-directory "{work}";',
            f"  listen-on port {self.port} {{ {self.address}; }};",
            "  listen-on-v6 { none; };",
            "  recursion no;",
            "  dnssec-validation no;",
            "  notify no;",
            "  allow-transfer { none; };",
            f'  key-directory "{work}/keys";',
            "};",
            "controls { };",
            "logging {",
            f'  channel main {{ file "{work}/named.log"; severity info; print-time yes; print-category yes; }};',
            "  category default { main; };",
            "  category update { main; };",
            "  category update-security { main; };",
            "  category security { main; };",
            "};",
        ]
        if any(zone.signed for zone in self.zones.values()):
            parts.append(dnssec.POLICY)
        for key in self.keys.values():
            parts += [f'key "{key.name}" {{', f"  algorithm {key.algorithm};", f'  secret "{key.secret}";', "};"]
        for zone in self.zones.values():
            parts += [f'zone "{zone.origin}" {{', "  type primary;", f'  file "{work}/{zone.origin}.zone";']
            if zone.signed:
                parts.append(f'  dnssec-policy "{dnssec.POLICY_NAME}";')
                if not zone.dynamic:
                    parts.append("  inline-signing yes;")
            if zone.dynamic:
                # The updating key may also transfer the zone: mailstack reads the whole
                # zone before it writes (mailstack.rfc2136.wire.transfer).
                allowed = [zone.update_key] if zone.update_key else list(self.keys)
                grants = " ".join(f'key "{k}";' for k in allowed) or "none;"
                parts.append(f"  allow-update {{ {grants} }};")
                parts.append(f"  allow-transfer {{ {grants} }};")
            parts.append("};")
        return "\n".join(parts) + "\n"

    def ds_lines(self, origin: str) -> list[str]:
        """The DS record(s) of a signed zone's key, made before named starts (named
        adopts the key), in zone-file syntax: for its parent or a trust-anchor file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_conf()
        return dnssec.policy_ds(self.workdir / "keys", names.normalize(origin), self.conf_path)

    def _parent_ds(self, zone: _Zone) -> list[str]:
        """DS lines of the signed zones served here that ``zone`` delegates (NS lines
        for them, by relative or absolute owner): a DS belongs at a zone cut only."""
        delegated = {line.split()[0].rstrip(".").lower() for line in zone.lines if len(line.split()) > 3 and "NS" in line.split()[1:4]}
        children = [z for z in self.zones.values() if z.signed and z.origin.endswith("." + zone.origin)
                    and names.normalize(z.origin.split(".", 1)[1]) == zone.origin
                    and (z.origin in delegated or z.origin[: -len(zone.origin) - 1] in delegated)]
        return [line for child in children for line in self.ds_lines(child.origin)]

    def _write_conf(self) -> None:
        (self.workdir / "keys").mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as conf:
            conf.write(self._config())

    def write(self) -> None:
        """Write named.conf and the zone files (the key secrets readable by root only)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self._write_conf()
        for zone in self.zones.values():
            path = self.workdir / f"{zone.origin}.zone"
            if zone.dynamic and path.exists() and self.process:
                continue  # a running dynamic zone owns its file (and journal)
            text = "\n".join([*zone.lines, *self._parent_ds(zone)]) + "\n"
            if path.exists() and path.read_text(encoding="ascii") == text:
                continue
            path.with_name(path.name + ".jnl").unlink(missing_ok=True)
            previous = path.stat().st_mtime if path.exists() else 0.0
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(text)
            # named reloads a zone only when its file's mtime moved on (whole seconds):
            # a rewrite within the same second would otherwise be ignored.
            stamp = max(time.time(), previous + 1.0)
            os.utime(path, (stamp, stamp))

    def check(self) -> None:
        """Run named-checkconf and named-checkzone; raise with their output on error."""
        result = subprocess.run([binary("named-checkconf"), str(self.conf_path)], capture_output=True, text=True)
        if result.returncode:
            raise MailstackError(f"named-checkconf: {result.stdout}{result.stderr}".strip())

    def start(self, timeout: float = 15.0) -> None:
        """Start named in the foreground and wait until it reports it is running."""
        if self.process and self.process.poll() is None:
            return
        self.write()
        self.check()
        self.log_path.unlink(missing_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT, 0o600)  # named keeps the mode it finds
        os.close(fd)
        self.added_address = netns_tools.add_address(self.address, self.netns) or self.added_address
        command = [binary("named"), "-f", "-c", str(self.conf_path)]
        if self.netns:
            command = [binary("ip"), "netns", "exec", self.netns, *command]
        # named's journals and session key are created with its umask: root's only.
        if self.stderr_path is None:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, umask=0o077)
        else:
            with open(self.stderr_path, "ab") as stderr:
                self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, umask=0o077)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                self.process = None
                self._release_address()
                raise MailstackError(f"named exited at start: {error}{log[-2000:]}")
            if self.log_path.exists() and "running" in self.log_path.read_text(errors="replace"):
                self._wait_signed(deadline)
                return
            time.sleep(0.01)
        self.stop()
        raise MailstackError(f"named did not start within {timeout:.0f}s on {self.address}:{self.port}")

    def _wait_signed(self, deadline: float) -> None:
        """Until every signed zone serves an RRSIG over its SOA (named signs within
        a fraction of a second; ``rndc signing -list`` refuses policy zones)."""
        for zone in [z for z in self.zones.values() if z.signed]:
            while not dnssec.serves_signed(self.address, self.port, zone.origin, self.netns):
                if time.monotonic() > deadline:
                    self.stop()
                    raise MailstackError(f"named did not sign {zone.origin} in time: see {self.log_path}")
                time.sleep(0.02)

    def restart(self, timeout: float = 15.0) -> None:
        """Start named again on the files as they are (a dynamic zone's journal kept),
        as after a crash: ``start`` would rewrite the zone files from their content."""
        if self.process and self.process.poll() is None:
            return
        before = self.log_path.read_text(errors="replace").count("running") if self.log_path.exists() else 0
        self.added_address = netns_tools.add_address(self.address, self.netns) or self.added_address
        command = [binary("named"), "-f", "-c", str(self.conf_path)]
        if self.netns:
            command = [binary("ip"), "netns", "exec", self.netns, *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise MailstackError(f"named exited at restart: see {self.log_path}")
            if self.log_path.exists() and self.log_path.read_text(errors="replace").count("running") > before:
                return
            time.sleep(0.05)
        self.stop()
        raise MailstackError(f"named did not restart within {timeout:.0f}s on {self.address}:{self.port}")

    def kill(self) -> None:
        """Kill named at once (SIGKILL), as a crash would: nothing is flushed."""
        if self.process:
            self.process.kill()
            self.process.wait(timeout=10)
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None

    def reload(self) -> None:
        """Re-read configuration and zones (SIGHUP), as ``rndc reload`` would."""
        self.write()
        if self.process:
            self.process.send_signal(signal.SIGHUP)
            time.sleep(0.3)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop named by PID and wait for it to exit."""
        if not self.process:
            self._release_address()
            return
        stop_child(self.process, timeout)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None
        self._release_address()

    def _release_address(self) -> None:
        if self.added_address:
            netns_tools.remove_address(self.address, self.netns)
            self.added_address = False

    def __enter__(self) -> BindServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
