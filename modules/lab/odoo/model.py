"""``Model``: the ORM methods Odoo's external API offers on every model.

``search``, ``search_count``, ``search_read``, ``read``, ``create``, ``write`` and
``unlink`` behave as Odoo 17's ``BaseModel`` does over XML-RPC: ``create`` takes one
dict or a list (and returns an id or a list), ``read`` returns many2one values as
``[id, display_name]`` and unset fields as False, unknown fields and wrong selection
values raise ``ValueError`` (fault 1, as in Odoo), a missing required field is the
``ValidationError`` Odoo makes of PostgreSQL's NOT NULL violation, and a many2one's
``ondelete`` (restrict, set null, cascade) is applied on ``unlink``. Subclasses declare
``fields`` and add Odoo's own constraints in ``_prepare``/``_constrain`` hooks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, ClassVar

from mailstack.lab.odoo.orm import INDEXED, Env, Field, ValidationError, matches, now

#: Odoo's message for a NOT NULL or foreign-key violation (``_as_validation_error``).
INTEGRITY = ("The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n"
             "- Delete: another model requires the record being deleted. If possible, archive it instead.")


class Model:
    """One Odoo model; ``bind(env)`` gives the instance a transaction to work in."""

    _name: ClassVar[str] = ""
    _description: ClassVar[str] = ""
    _order: ClassVar[str] = "id"
    _rec_name: ClassVar[str] = "name"
    fields: ClassVar[dict[str, Field]] = {}
    #: Public methods (besides the ORM's) callable through ``execute_kw``.
    rpc_methods: ClassVar[tuple[str, ...]] = ()
    ORM_METHODS: ClassVar[tuple[str, ...]] = ("search", "search_count", "search_read", "read", "create", "write", "unlink")

    def __init__(self, env: Env | None = None) -> None:
        self._env = env

    @property
    def env(self) -> Env:
        assert self._env is not None, f"{self._name} used outside a transaction"
        return self._env

    def bind(self, env: Env) -> Model:
        bound = copy.copy(self)
        bound._env = env
        return bound

    # -- values ------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        return self.env.rows(self._name)

    def row(self, record_id: int) -> dict[str, Any] | None:
        return self.env.row(self._name, record_id)

    def value(self, record: dict[str, Any], name: str) -> Any:
        """A field's value as Odoo computes it (computed fields included)."""
        if name == "id":
            return record["id"]
        definition = self.fields.get(name)
        if definition is None:
            if name == "display_name":
                return self.display_name(record)
            raise ValueError(f"Invalid field {name!r} on model {self._name!r}")
        if definition.compute is not None:
            return definition.compute(self.env, record)
        if definition.type == "one2many":
            assert definition.comodel and definition.inverse
            return [r["id"] for r in self.env[definition.comodel].rows() if r.get(definition.inverse) == record["id"]]
        stored = record.get(name)
        return definition.empty() if stored is None else stored

    def resolve(self, record: dict[str, Any], path: str) -> Any:
        """A field path (``alias_domain_id.name``) of a record, for domains."""
        head, _, rest = path.partition(".")
        value = self.value(record, head)
        if not rest:
            return value
        definition = self.fields.get(head)
        if definition is None or definition.comodel is None or not value:
            return False
        comodel = self.env[definition.comodel]
        targets = value if isinstance(value, list) else [value]
        results = []
        for target in targets:
            linked = comodel.row(int(target))
            if linked is not None:
                results.append(comodel.resolve(linked, rest))
        return results[0] if len(results) == 1 else results

    def display_name(self, record: dict[str, Any]) -> str:
        name = record.get(self._rec_name)
        return str(name) if name not in (None, False) else f"{self._name},{record['id']}"

    # -- ORM ---------------------------------------------------------------------------
    def _candidates(self, domain: list[Any] | None) -> list[dict[str, Any]]:
        """The rows a domain can match: narrowed in SQL by an indexed field's ``=``/``in``
        term with text operands when every term must hold (no ``|``/``!``), else all."""
        terms = domain or []
        if any(isinstance(item, str) for item in terms):
            return self.rows()
        for item in terms:
            if not (isinstance(item, (list, tuple)) and len(item) == 3 and item[0] in INDEXED):
                continue
            definition = self.fields.get(str(item[0]))
            operands = [item[2]] if item[1] in ("=", "==") else list(item[2]) if item[1] == "in" and isinstance(item[2], (list, tuple)) else []
            if definition is not None and definition.compute is None and operands and all(isinstance(o, str) and o for o in operands):
                return self.env.rows(self._name, equal={str(item[0]): operands})
        return self.rows()

    def search(self, domain: list[Any] | None = None, offset: int = 0, limit: int | None = None,
               order: str | None = None) -> list[int]:
        found = [r for r in self._candidates(domain) if matches(r, domain or [], self.resolve)]
        found = self._sorted(found, order or self._order)
        found = found[int(offset or 0):]
        if limit:
            found = found[: int(limit)]
        return [r["id"] for r in found]

    def search_count(self, domain: list[Any] | None = None, limit: int | None = None) -> int:
        return len([r for r in self._candidates(domain) if matches(r, domain or [], self.resolve)])

    def search_read(self, domain: list[Any] | None = None, fields: list[str] | None = None, offset: int = 0,
                    limit: int | None = None, order: str | None = None) -> list[dict[str, Any]]:
        return self.read(self.search(domain, offset, limit, order), fields)

    def read(self, ids: list[int] | int, fields: list[str] | None = None) -> list[dict[str, Any]]:
        names = list(fields) if fields else list(self.fields)
        for name in names:
            if name not in self.fields and name not in ("id", "display_name"):
                raise ValueError(f"Invalid field {name!r} on model {self._name!r}")
        result = []
        for record_id in [ids] if isinstance(ids, int) else ids:
            record = self.row(record_id)
            if record is None:
                continue
            out: dict[str, Any] = {"id": record["id"]}
            for name in names:
                out[name] = self._export(name, self.value(record, name))
            result.append(out)
        return result

    def _export(self, name: str, value: Any) -> Any:
        definition = self.fields.get(name)
        if definition is not None and definition.type == "many2one" and value:
            assert definition.comodel
            comodel = self.env[definition.comodel]
            linked = comodel.row(int(value))
            return [int(value), comodel.display_name(linked)] if linked else False
        return value

    def create(self, vals_list: dict[str, Any] | list[dict[str, Any]]) -> int | list[int]:
        single = isinstance(vals_list, dict)
        ids = []
        for vals in [vals_list] if isinstance(vals_list, dict) else vals_list:
            values = self._check_values(dict(vals))
            for name, definition in self.fields.items():
                if name not in values and definition.default is not None and definition.compute is None:
                    values[name] = definition.default(self.env) if callable(definition.default) else definition.default
            values = self._prepare(values, None)
            self._check_required(values)
            values.setdefault("create_date", now())
            values["write_date"] = now()
            ids.append(self.env.insert(self._name, values))
        for record_id in ids:
            record = self.row(record_id)
            assert record is not None
            self._constrain(record)
        self._after_create(ids)
        return ids[0] if single else ids

    def write(self, ids: list[int] | int, vals: dict[str, Any]) -> bool:
        for record_id in [ids] if isinstance(ids, int) else ids:
            old = self.row(record_id)
            if old is None:
                raise ValidationError(f"Record does not exist or has been deleted.\n(Record: {self._name}({record_id},), User: {self.env.uid})")
            values = self._prepare(self._check_values(dict(vals)), old)
            merged = {**old, **values}
            self._check_required(merged)
            values["write_date"] = now()
            self.env.update(self._name, record_id, values)
            record = self.row(record_id)
            assert record is not None
            self._constrain(record)
        self._after_write([ids] if isinstance(ids, int) else list(ids), vals)
        return True

    def unlink(self, ids: list[int] | int) -> bool:
        targets = [ids] if isinstance(ids, int) else list(ids)
        self._before_unlink(targets)
        for other in self.env.registry.values():
            for name, definition in other.fields.items():
                if definition.type != "many2one" or definition.comodel != self._name or definition.compute:
                    continue
                bound = self.env[other._name]
                for record in bound.rows():
                    if record.get(name) not in targets:
                        continue
                    mode = definition.ondelete
                    if mode == "restrict":
                        raise ValidationError(f"{INTEGRITY}\n\nModel: {other._description} ({other._name}), "
                                              f"Constraint: {other._name}_{name}_fkey")
                    if mode == "cascade":
                        bound.unlink([record["id"]])
                    else:
                        self.env.update(other._name, record["id"], {name: False})
        for record_id in targets:
            self.env.delete(self._name, record_id)
        if self._name != "ir.model.data":
            # BaseModel.unlink also deletes the external ids of the deleted records.
            for data in self.env.rows("ir.model.data"):
                if data.get("model") == self._name and data.get("res_id") in targets:
                    self.env.delete("ir.model.data", data["id"])
        self._after_unlink(targets)
        return True

    # -- hooks for Odoo's own rules ------------------------------------------------------
    def _prepare(self, values: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """Sanitise values before they are stored (``create``/``write`` overrides)."""
        return values

    def _constrain(self, record: dict[str, Any]) -> None:
        """Odoo's ``@api.constrains`` and SQL constraints, after a create/write."""

    def _after_create(self, ids: list[int]) -> None:
        """Work Odoo's ``create`` override does after the records exist."""

    def _after_write(self, ids: list[int], vals: dict[str, Any]) -> None:
        """Work Odoo's ``write`` override does afterwards."""

    def _before_unlink(self, ids: list[int]) -> None:
        """Checks Odoo's ``unlink`` override makes first."""

    def _after_unlink(self, ids: list[int]) -> None:
        """Work Odoo's ``unlink`` override does afterwards."""

    # -- helpers -------------------------------------------------------------------------
    def _check_values(self, values: dict[str, Any]) -> dict[str, Any]:
        for name, value in values.items():
            definition = self.fields.get(name)
            if definition is None:
                raise ValueError(f"Invalid field {name!r} on model {self._name!r}")
            if definition.compute is not None:
                continue  # Odoo ignores writes to non-stored computed fields without inverse
            if definition.type == "selection" and value not in (False, None) and value not in definition.selection:
                raise ValueError(f"Wrong value for {self._name}.{name}: {value!r}")
            if definition.type == "many2one" and value not in (False, None):
                assert definition.comodel
                if self.env[definition.comodel].row(int(value)) is None:
                    raise ValidationError(f"{INTEGRITY}\n\nModel: {self._description} ({self._name}), Field: {definition.string or name} ({name})")
                values[name] = int(value)
            if definition.type == "integer" and value not in (False, None):
                values[name] = int(value)
        return {k: v for k, v in values.items() if self.fields[k].compute is None}

    def _check_required(self, values: dict[str, Any]) -> None:
        for name, definition in self.fields.items():
            if definition.required and definition.compute is None and values.get(name) in (None, False, ""):
                raise ValidationError(f"{INTEGRITY}\n\nModel: {self._description} ({self._name}), Field: {definition.string or name} ({name})")

    def _sorted(self, records: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
        for part in reversed([p.strip() for p in order.split(",") if p.strip()]):
            name, _, direction = part.partition(" ")
            reverse = direction.strip().lower() == "desc"
            records = sorted(records, key=self._sort_by(name), reverse=reverse)
        return records

    def _sort_by(self, name: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
        return lambda record: _sort_key(record["id"] if name == "id" else self.value(record, name))


def _sort_key(value: Any) -> tuple[int, Any]:
    if value in (False, None):
        return (0, "")
    if isinstance(value, list):
        return (1, value[0] if value else 0)
    return (1, value)

