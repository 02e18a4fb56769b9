"""Run the Odoo stand-in: as a process (``python -m mailstack.lab.odoo``) or from Python
(``OdooStandIn(...).start()`` / ``.stop()``, optionally inside a network namespace).

A fresh database is seeded as a new Odoo 17 database would be after the administrator
configured its mail: one company (``--company``), the models aliases target, the
fetchmail cron (inactive), then the declared alias domains (the first one goes to the
company, as ``mail.alias.domain.create`` does), aliases (``--alias sales@example.com``
or ``sales@example.com=helpdesk.ticket``) and known partners. A restart on the same
database file keeps everything. Outgoing mail uses the odoo.conf given (``--odoo-conf``:
``smtp_server``, ``smtp_port``, ``smtp_ssl``, ``smtp_user``, ``smtp_password``,
``email_from``, ``from_filter``), as Odoo does without ``ir.mail_server`` records.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailstack.lab.binaries import binary
from mailstack.lab.odoo.fetchmail import CRON_XMLID, Cron
from mailstack.lab.odoo.orm import Store, transaction
from mailstack.lab.odoo.server import BEHAVIOURS, Odoo, Settings, serve
from mailstack.lab.odoo.threads import THREAD_MODELS
from mailstack.lab.process import stop_child

PROJECT_ROOT = Path(__file__).resolve().parents[3]
#: Odoo's default company name in a new database (base data; not in the spec).
DEFAULT_COMPANY = "YourCompany"


def seed(odoo: Odoo, company: str, alias_domains: Sequence[str], aliases: Sequence[str], partners: Sequence[str]) -> None:
    """Fill an empty database; a database with a company is left as it is."""
    with transaction(odoo.store, odoo.registry, odoo.config.uid, config=odoo.config) as env:
        if env.rows("res.company"):
            return
        env["res.company"].create({"name": company})
        models = env["ir.model"]
        for cls in THREAD_MODELS:
            models.create({"model": cls._name, "name": cls._description})
        fetchmail_model = models.create({"model": "fetchmail.server", "name": "Incoming Mail Server"})
        cron = env["ir.cron"].create({"name": "Mail: Fetchmail Service", "model_id": fetchmail_model, "code": "model._fetch_mails()",
                                      "interval_number": 5, "interval_type": "minutes", "active": False})
        module, _, name = CRON_XMLID.partition(".")
        env["ir.model.data"].create({"module": module, "name": name, "model": "ir.cron", "res_id": cron, "noupdate": True})
        domain_ids: dict[str, int] = {}
        for spec in alias_domains:
            # NAME[,bounce=...,catchall=...,default_from=...]
            domain, *options = spec.split(",")
            values = dict(option.partition("=")[::2] for option in options)
            record = {"name": domain}
            for key, field_name in (("bounce", "bounce_alias"), ("catchall", "catchall_alias"), ("default_from", "default_from")):
                if values.get(key):
                    record[field_name] = values[key]
            created = env["mail.alias.domain"].create(record)
            assert isinstance(created, int)
            domain_ids[domain] = created
        for spec in aliases:
            address, _, model = spec.partition("=")
            local, _, domain = address.partition("@")
            target = models.search([("model", "=", model or "crm.lead")])
            if not target:
                raise SystemExit(f"--alias {spec}: unknown model {model}")
            if domain not in domain_ids:
                created = env["mail.alias.domain"].create({"name": domain})
                assert isinstance(created, int)
                domain_ids[domain] = created
            env["mail.alias"].create({"alias_name": local, "alias_domain_id": domain_ids[domain], "alias_model_id": target[0]})
        for email_address in partners:
            env["res.partner"].create({"name": email_address.partition("@")[0], "email": email_address})


def read_odoo_conf(path: Path | None, config: Settings) -> None:
    """odoo.conf's ``[options]`` outgoing keys into ``config``."""
    if path is None:
        return
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    options = parser["options"] if parser.has_section("options") else {}

    def value(key: str) -> str | None:
        text = options.get(key)
        return None if text in (None, "", "False") else str(text)

    config.smtp_server = value("smtp_server")
    config.smtp_port = int(value("smtp_port") or 25)
    config.smtp_ssl = (value("smtp_ssl") or "").lower() == "true"
    config.smtp_user = value("smtp_user")
    config.smtp_password = value("smtp_password")
    config.email_from = value("email_from")
    config.from_filter = value("from_filter")


@dataclass
class OdooStandIn:
    """Start/stop the stand-in as a child process (optionally in a network namespace).

    ``password`` is written to a 0600 file passed by path, never put in argv."""

    workdir: Path
    address: str
    #: 0: any free port; after ``start()`` the bound one (a restart reuses it).
    port: int = 8069
    database: str = "odoo"
    password: str = "odoo-standin-password"
    #: Aliases ``local@domain`` (``=model`` to target another model than crm.lead).
    aliases: Sequence[str] = ()
    #: Alias domains created first (default: the aliases' domains).
    alias_domains: Sequence[str] = ()
    partners: Sequence[str] = ()
    netns: str | None = None
    behaviour: str = "ok"
    login_name: str = "admin"
    uid: int = 2
    company: str = DEFAULT_COMPANY
    odoo_conf: Path | None = None
    smtp_source: str | None = None
    hostname: str = "localhost"
    minute: float = 60.0
    fetchmail_seen: str = "always"
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def db_path(self) -> Path:
        return self.workdir / "odoo-standin.sqlite3"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        password_file = self.workdir / "odoo-standin.password"
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password)
        command = [
            sys.executable, "-m", "mailstack.lab.odoo", "--listen", f"{self.address}:{self.port}",
            "--db", str(self.db_path), "--database", self.database, "--password-file", str(password_file),
            "--login", self.login_name, "--uid", str(self.uid), "--behaviour", self.behaviour, "--company", self.company,
            "--hostname", self.hostname, "--minute", str(self.minute), "--fetchmail-seen", self.fetchmail_seen,
        ]
        for domain in self.alias_domains:
            command += ["--alias-domain", domain]
        for alias in self.aliases:
            command += ["--alias", alias]
        for partner in self.partners:
            command += ["--partner", partner]
        if self.odoo_conf:
            command += ["--odoo-conf", str(self.odoo_conf)]
        if self.smtp_source:
            command += ["--smtp-source", self.smtp_source]
        return [binary("ip"), "netns", "exec", self.netns, *command] if self.netns else command

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._marker().unlink(missing_ok=True)
        # Its log and its store hold the mail it received: private (0600, umask 077).
        log = os.fdopen(os.open(self.workdir / "odoo-standin.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        os.fchmod(log.fileno(), 0o600)
        env = {**os.environ, **self.extra_env}
        self.process = subprocess.Popen(self.command(), cwd=PROJECT_ROOT, stdout=log, stderr=log, start_new_session=True, env=env, umask=0o077)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Odoo stand-in exited with {self.process.returncode}: see {self.workdir / 'odoo-standin.log'}")
            if self._ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the Odoo stand-in did not listen on {self.address}:{self.port} within {timeout}s")

    def _marker(self) -> Path:
        return self.workdir / "odoo-standin.ready"

    def _ready(self) -> bool:
        # The server writes the marker once bound (works inside a namespace too): its
        # PID and port, so port 0 (any free port) works.
        try:
            fields = self._marker().read_text().split()
        except FileNotFoundError:
            return False
        if len(fields) < 2:
            return False
        self.port = int(fields[1])
        return True

    def stop(self) -> None:
        """Stop the process (by its PID) and wait for it."""
        stop_child(self.process)
        self._marker().unlink(missing_ok=True)
        self.process = None

    def messages(self) -> list[dict[str, Any]]:
        """Stored inbound messages: id, message_id, raw (bytes), routes, subject, email_from, model, res_id."""
        return Store(self.db_path).messages() if self.db_path.exists() else []

    def outbox(self) -> list[dict[str, Any]]:
        """The mails Odoo sent (its bounces): mail_from, rcpt_to, raw, sent_at, error."""
        return Store(self.db_path).outbox() if self.db_path.exists() else []

    def __enter__(self) -> OdooStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailstack.lab.odoo", description="An Odoo 17 stand-in (XML-RPC, mail gateway, mail settings).")
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT, e.g. 127.0.20.5:8069")
    parser.add_argument("--db", required=True, type=Path, help="SQLite file of the database")
    parser.add_argument("--database", default="odoo", help="the Odoo database name clients must use")
    parser.add_argument("--password-file", required=True, type=Path)
    parser.add_argument("--login", default="admin")
    parser.add_argument("--uid", type=int, default=2)
    parser.add_argument("--behaviour", default="ok", help=f"one of {', '.join(BEHAVIOURS)} or slow:SECONDS")
    parser.add_argument("--company", default=DEFAULT_COMPANY)
    parser.add_argument("--alias-domain", action="append", default=[], help="NAME[,bounce=B,catchall=C,default_from=F] (repeat)")
    parser.add_argument("--alias", action="append", default=[], help="local@domain[=model] (repeat)")
    parser.add_argument("--partner", action="append", default=[], help="a known contact's e-mail (repeat)")
    parser.add_argument("--odoo-conf", type=Path, help="odoo.conf with the [options] smtp_* keys")
    parser.add_argument("--smtp-source", help="the address outgoing SMTP connects from")
    parser.add_argument("--hostname", default="localhost", help="the name Odoo's host says in EHLO and Message-Ids")
    parser.add_argument("--minute", type=float, default=60.0, help="seconds in one of Odoo's minutes (cron; tests shorten it)")
    parser.add_argument("--fetchmail-seen", choices=("always", "after-success"), default="always")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    address, _, port = args.listen.rpartition(":")
    behaviour, delay = args.behaviour, 0.0
    if behaviour.startswith("slow:"):
        behaviour, delay = "ok", float(behaviour.split(":", 1)[1])
    elif behaviour not in BEHAVIOURS:
        parser.error(f"--behaviour {behaviour!r} is not one of {', '.join(BEHAVIOURS)} or slow:SECONDS")
    config = Settings(database=args.database, login=args.login, password=args.password_file.read_text().strip(), uid=args.uid,
                      behaviour=behaviour, delay=delay, smtp_source=args.smtp_source, hostname=args.hostname,
                      minute=args.minute, fetchmail_seen=args.fetchmail_seen)
    read_odoo_conf(args.odoo_conf, config)
    odoo = Odoo(Store(args.db), config)
    seed(odoo, args.company, args.alias_domain, args.alias, args.partner)
    cron = Cron(odoo.store, odoo.registry, config, config.uid)
    cron.start()
    server = serve(address.strip("[]"), int(port), odoo)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    ready = args.db.parent / "odoo-standin.ready"
    ready.with_suffix(".tmp").write_text(f"{os.getpid()} {server.server_address[1]}\n")
    ready.with_suffix(".tmp").replace(ready)
    try:
        server.serve_forever()
    finally:
        cron.stopping.set()
        server.server_close()
        ready.unlink(missing_ok=True)
    return 0
