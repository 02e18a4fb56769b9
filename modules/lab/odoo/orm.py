"""The stand-in's small ORM: records in SQLite, Odoo's domains, Odoo's exceptions.

Every model keeps its records as JSON in one SQLite table (``records``: model, id,
data); a call runs in one SQLite transaction (``Env``), committed when the method
returns and rolled back when it raises, as Odoo's ``odoo.service.model.retrying`` does.
Raw inbound messages sit beside, in ``raws``; the ``messages`` view joins them to their
``mail.message`` rows for readers outside the stand-in (the lab's e2e check, tests).

Only what the mail settings and the mail gateway use is modelled: char/text/integer/
boolean/selection/datetime fields, many2one (read back as ``[id, name]`` like Odoo's
XML-RPC) and computed one2many, the domain operators ``= != in not in like ilike =like
=ilike < > <= >=`` with ``& | !`` and dotted many2one paths.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailstack.lab.odoo.model import Model

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (model TEXT NOT NULL, id INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (model, id));
CREATE TABLE IF NOT EXISTS raws (id INTEGER PRIMARY KEY, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, mail_from TEXT, rcpt_to TEXT, raw BLOB, sent_at REAL, error TEXT);
CREATE VIEW IF NOT EXISTS messages AS
    SELECT r.id AS id, json_extract(r.data, '$.message_id') AS message_id, x.raw AS raw,
           json_extract(r.data, '$.x_routes') AS routes, json_extract(r.data, '$.subject') AS subject,
           json_extract(r.data, '$.email_from') AS email_from, json_extract(r.data, '$.model') AS model,
           json_extract(r.data, '$.res_id') AS res_id
    FROM records r JOIN raws x ON x.id = r.id WHERE r.model = 'mail.message';
CREATE INDEX IF NOT EXISTS records_message_id ON records (model, json_extract(data, '$.message_id'));
CREATE INDEX IF NOT EXISTS records_create_date ON records (model, json_extract(data, '$.create_date'));
"""
#: Stored fields a search narrows in SQL before the domain is applied: what Odoo 17
#: declares ``index=True`` and message_process looks up per message (``mail.message``'s
#: ``message_id``, every model's ``create_date``) — so the stand-in's cost per message
#: stays flat as its database grows, as Odoo's indexed queries do.
INDEXED = ("message_id", "create_date")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class OdooError(Exception):
    """Base of the exceptions Odoo's XML-RPC turns into faults."""


class UserError(OdooError):
    """``odoo.exceptions.UserError``: fault code 2, faultString the message."""


class ValidationError(UserError):
    """``odoo.exceptions.ValidationError``: a UserError (fault code 2)."""


class AccessDenied(OdooError):
    """``odoo.exceptions.AccessDenied``: fault code 3, "Access Denied"."""


class AccessError(OdooError):
    """``odoo.exceptions.AccessError``: fault code 4."""


def now() -> str:
    """Odoo's ``fields.Datetime.now()`` as stored and sent over XML-RPC (UTC, no zone)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime(DATETIME_FORMAT)


def ago(minutes: float) -> str:
    """The datetime string ``minutes`` ago."""
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes)
    return moment.strftime(DATETIME_FORMAT)


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a model: its Odoo type, default, and whether it is stored."""

    type: str  # char text integer boolean selection datetime many2one one2many binary
    required: bool = False
    default: Any = None
    comodel: str | None = None
    #: one2many: the many2one on ``comodel`` pointing back.
    inverse: str | None = None
    selection: tuple[str, ...] = ()
    #: Computed on read from the record (and the env); never stored or written.
    compute: Callable[[Env, dict[str, Any]], Any] | None = None
    readonly: bool = False
    string: str = ""
    #: many2one: what deleting the target does (restrict, set null, cascade).
    ondelete: str = "set null"

    def empty(self) -> Any:
        """The value Odoo returns for an unset field of this type."""
        if self.type in ("one2many",):
            return []
        if self.type == "integer":
            return 0
        return False


class Store:
    """The SQLite file behind the stand-in (one connection per transaction: threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self.connect() as db:
            db.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    def messages(self) -> list[dict[str, Any]]:
        """Stored inbound messages (``mail.message`` with their raw bytes), by id."""
        with self.connect() as db:
            return [dict(row) for row in db.execute("SELECT * FROM messages ORDER BY id")]

    def outbox(self) -> list[dict[str, Any]]:
        """Every mail the stand-in sent (bounces), with its SMTP outcome."""
        with self.connect() as db:
            return [dict(row) for row in db.execute("SELECT * FROM outbox ORDER BY id")]


@dataclass
class Env:
    """One transaction: the cursor, the caller's uid and context, and the models."""

    db: sqlite3.Connection
    registry: dict[str, Model]
    uid: int = 2
    context: dict[str, Any] = field(default_factory=dict)
    #: The server's settings (``mailstack.lab.odoo.server.Settings``): odoo.conf's
    #: smtp options, the host name, the clock scale.
    config: Any = None
    #: Work to run after commit (mail sending happens in the transaction in Odoo; this
    #: is for hooks that must see committed data).
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    def __getitem__(self, model: str) -> Model:
        if model not in self.registry:
            raise UserError(f"Object {model} doesn't exist")
        return self.registry[model].bind(self)

    def param(self, key: str, default: Any = False) -> Any:
        """``ir.config_parameter.get_param``."""
        found = [r for r in self.rows("ir.config_parameter") if r.get("key") == key]
        return found[0].get("value") if found else default

    def ref(self, xmlid: str) -> dict[str, Any] | None:
        """``env.ref``: the record behind an external id ``module.name``."""
        module, _, name = xmlid.partition(".")
        for data in self.rows("ir.model.data"):
            if data.get("module") == module and data.get("name") == name:
                return self.row(str(data["model"]), int(data["res_id"]))
        return None

    # -- raw record access (no constraints: models call these) ------------------------
    def rows(self, model: str, *, equal: Mapping[str, Sequence[Any]] | None = None, since: str | None = None,
             contains: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The model's records; narrowed in SQL to those whose stored field equals one
        of ``equal[field]``, whose ``create_date`` is at or after ``since``, or whose
        stored text lowercased contains ``contains[field]`` (each only a filter: the
        caller still applies Odoo's own comparison)."""
        sql, params = ["model = ?"], [model]
        for name, values in (equal or {}).items():
            assert _FIELD.match(name) and values, name
            sql.append(f"json_extract(data, '$.{name}') IN ({', '.join('?' * len(values))})")
            params += list(values)
        if since is not None:
            sql.append("json_extract(data, '$.create_date') >= ?")
            params.append(since)
        for name, text in (contains or {}).items():
            assert _FIELD.match(name), name
            if not text.isascii():
                continue  # SQLite's lower() folds ASCII only: Python's comparison decides
            sql.append(f"instr(lower(json_extract(data, '$.{name}')), ?) > 0")
            params.append(text.lower())
        cursor = self.db.execute(f"SELECT id, data FROM records WHERE {' AND '.join(sql)} ORDER BY id", params)
        return [{**json.loads(row["data"]), "id": row["id"]} for row in cursor]

    def row(self, model: str, record_id: int) -> dict[str, Any] | None:
        found = self.db.execute("SELECT data FROM records WHERE model = ? AND id = ?", (model, int(record_id))).fetchone()
        return {**json.loads(found["data"]), "id": int(record_id)} if found else None

    def insert(self, model: str, values: dict[str, Any]) -> int:
        last = self.db.execute("SELECT MAX(id) FROM records WHERE model = ?", (model,)).fetchone()[0]
        record_id = int(last or 0) + 1
        self.db.execute("INSERT INTO records (model, id, data) VALUES (?, ?, ?)", (model, record_id, json.dumps(values)))
        return record_id

    def update(self, model: str, record_id: int, values: dict[str, Any]) -> None:
        current = self.row(model, record_id)
        if current is None:
            raise UserError(f"Record does not exist or has been deleted.\n(Record: {model}({record_id},), User: {self.uid})")
        current.pop("id")
        current.update(values)
        self.db.execute("UPDATE records SET data = ? WHERE model = ? AND id = ?", (json.dumps(current), model, int(record_id)))

    def delete(self, model: str, record_id: int) -> None:
        self.db.execute("DELETE FROM records WHERE model = ? AND id = ?", (model, int(record_id)))


@contextmanager
def transaction(store: Store, registry: dict[str, Model], uid: int, context: dict[str, Any] | None = None,
                config: Any = None) -> Iterator[Env]:
    """One Odoo transaction: BEGIN IMMEDIATE (calls are serialised, as row locks would
    serialise them in PostgreSQL), COMMIT on return, ROLLBACK on any exception."""
    db = store.connect()
    try:
        db.execute("BEGIN IMMEDIATE")
        env = Env(db, registry, uid, dict(context or {}), config)
        try:
            yield env
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        for hook in env.after_commit:
            hook()
    finally:
        db.close()


# -- domains -----------------------------------------------------------------------------

Resolver = Callable[[dict[str, Any], str], Any]


def matches(record: dict[str, Any], domain: list[Any], resolve: Resolver) -> bool:
    """True when ``record`` satisfies an Odoo domain (prefix ``& | !``, implicit ``&``)."""
    stack: list[bool] = []
    for item in reversed(domain or []):
        if item == "&":
            stack.append(stack.pop() and stack.pop())
        elif item == "|":
            left, right = stack.pop(), stack.pop()
            stack.append(left or right)
        elif item == "!":
            stack.append(not stack.pop())
        elif isinstance(item, (list, tuple)) and len(item) == 3:
            stack.append(_term(resolve(record, str(item[0])), str(item[1]), item[2]))
        elif item in (True, 1, [1, "=", 1]):
            stack.append(True)
        else:
            raise ValueError(f"Invalid leaf {item!r}")
    return all(stack)


def _term(value: Any, operator: str, operand: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], int) and isinstance(value[1], str):
        values = [value[0]]  # a many2one read value [id, name]
    if operator in ("=", "=="):
        return any(_eq(v, operand) for v in values) if values else operand in (False, None)
    if operator in ("!=", "<>"):
        return not any(_eq(v, operand) for v in values)
    if operator == "in":
        return any(_eq(v, o) for v in values for o in operand)
    if operator == "not in":
        return not any(_eq(v, o) for v in values for o in operand)
    if operator in ("like", "ilike", "not like", "not ilike", "=like", "=ilike"):
        fold = operator.endswith("ilike")
        pattern = str(operand)
        found = False
        for v in values:
            if v in (False, None):
                continue
            text, pat = (str(v).lower(), pattern.lower()) if fold else (str(v), pattern)
            if operator.startswith("="):
                found = found or fnmatch.fnmatchcase(text, pat.replace("%", "*").replace("_", "?"))
            else:
                found = found or pat in text
        return not found if operator.startswith("not") else found
    if operator in ("<", ">", "<=", ">="):
        comparable = [v for v in values if v not in (False, None)]
        checks = {"<": lambda a: a < operand, ">": lambda a: a > operand, "<=": lambda a: a <= operand, ">=": lambda a: a >= operand}
        return any(checks[operator](v) for v in comparable)
    raise ValueError(f"Invalid operator {operator!r}")


def _eq(value: Any, operand: Any) -> bool:
    if operand is False or operand is None:
        return value in (False, None, "", [])
    if isinstance(operand, bool) or isinstance(value, bool):
        return bool(value) == bool(operand)
    return bool(value == operand)
