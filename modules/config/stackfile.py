"""Read a Pulumi stack file (``stacks/Pulumi.<stack>.yaml``) without the Pulumi CLI.

The CLI, the checks and the lab read the same declaration the Pulumi program gets.
Values Pulumi encrypted (``{secure: ...}``) cannot be decrypted here: they become a
``Secret`` marker, and the tool that needs one reads it from the environment instead
(see ``secret_from_env``).

Stack files may come from a pull request, so the YAML is read defensively
(``StackLoader``: libyaml's parser when PyYAML has it, else PyYAML's own, with the
same composer checks and safe constructor): a file over ``MAX_FILE_SIZE``, nesting deeper than ``MAX_DEPTH``,
an anchor or alias (``&x``/``*x``, the "billion laughs"), a merge key (``<<``) or a
duplicate key is refused with the file, the line and what to change — never a
traceback, never a silent "last one wins". Keys of the ``config:`` mapping whose
namespace is a near-miss of ``mailstack`` (``mailstak:dmarc``, ``Mailstack:dmarc``)
are errors too: ignored, they would silently drop a declared ``p=reject``.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
import yaml.composer
import yaml.constructor
import yaml.nodes
import yaml.resolver

from mailstack.core.errors import ConfigError, ConfigErrors, MailstackError, quote
from mailstack.core.model import MailDomain

NAMESPACE = "mailstack"
#: A stack file larger than this is refused unread: the largest real stacks (2,000
#: alias domains, each with its zone in ``dns.aliasZones``) are about 120 KB, and even
#: PyYAML's pure-Python parser (~300 KB a second; libyaml's is ten times faster)
#: reads any file accepted in under a second.
MAX_FILE_SIZE = 256 * 1024
#: Mappings and lists nested deeper than this are refused (the deepest key of a stack
#: is 5 levels down: config → mailstack:gateway → mailgate → ...).
MAX_DEPTH = 20


@dataclass(frozen=True, slots=True)
class Secret:
    """An encrypted stack value; only the Pulumi engine can read it."""

    key: str


class StackFileError(MailstackError):
    """A stack file that cannot be read as one: the message names the file (and the
    line), e.g. ``stacks/Pulumi.x.yaml: line 7: duplicate key 'mailstack:dmarc'``."""


class _Refused(yaml.YAMLError):
    """A YAML construct a stack file may not use, at a line."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


class _Refusals(yaml.composer.Composer):
    """The checks of ``StackLoader``, on top of whichever parser reads the text:
    anchors and aliases, merge keys, duplicate keys, deep nesting are refused."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[attr-defined]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(line, f"alias *{event.anchor} refused: stack files may not use YAML anchors and aliases")
        if getattr(event, "anchor", None):
            raise _Refused(line, f"anchor &{event.anchor} refused: stack files may not use YAML anchors and aliases")
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(line, f"nested more than {MAX_DEPTH} levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.nodes.MappingNode):
            return super().construct_mapping(node, deep=deep)  # type: ignore[misc, no-any-return]
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(line, "merge key '<<' refused: write the keys out")
            key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
            try:
                first = seen.get(key)
            except TypeError:
                raise _Refused(line, f"a key must be a string, not {quote(key)}") from None
            if first is not None:
                raise _Refused(line, f"duplicate key {quote(key)} (first at line {first}): keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc, no-any-return]


class _PythonStackLoader(_Refusals, yaml.SafeLoader):
    """PyYAML's own (pure Python) safe loader with the refusals."""

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 (PyYAML's name)
        # Checked in the scanner, not only the composer: PyYAML scans a flow
        # collection's whole inside before the first node is composed, in time
        # quadratic in its depth (100,000 '[' would take hours).
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(self.get_mark().line + 1, f"nested more than {MAX_DEPTH} levels deep")
        super().fetch_flow_collection_start(TokenClass)


StackLoader: type = _PythonStackLoader
if yaml.__with_libyaml__:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    class _LibyamlStackLoader(_Refusals, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """libyaml scanning and parsing (ten times faster, nesting capped at 1,000 by
        libyaml itself) under the same refusals and the same safe constructor."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)

    StackLoader = _LibyamlStackLoader


def parse(text: str, source: str) -> Any:
    """The document of a stack file's text; StackFileError naming ``source``."""
    try:
        return yaml.load(text, Loader=StackLoader)  # noqa: S506 (StackLoader is a SafeLoader)
    except _Refused as err:
        raise StackFileError(f"{source}: {err}") from None
    except yaml.MarkedYAMLError as err:
        where = f"line {err.problem_mark.line + 1}: " if err.problem_mark else ""
        raise StackFileError(f"{source}: not valid YAML: {where}{err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise StackFileError(f"{source}: not valid YAML: {quote(str(err))}") from None
    except (ValueError, RecursionError, OverflowError) as err:
        # int() of a 5,000-digit number, a float or date out of range.
        raise StackFileError(f"{source}: a value cannot be read: {quote(str(err))}") from None


def read_text(path: Path) -> str:
    """A stack file's text, refused when missing, unreadable, too big or not UTF-8."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > MAX_FILE_SIZE:
                raise StackFileError(f"{path}: larger than {MAX_FILE_SIZE // 1024} KB: not a stack file")
            data = handle.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError as err:
        raise MailstackError(f"{path}: no such stack file") from err
    except IsADirectoryError as err:
        raise MailstackError(f"{path}: cannot read the stack file: it is a directory") from err
    except OSError as err:
        raise MailstackError(f"{path}: cannot read the stack file: {err.strerror}") from err
    if len(data) > MAX_FILE_SIZE:
        raise StackFileError(f"{path}: larger than {MAX_FILE_SIZE // 1024} KB: not a stack file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StackFileError(f"{path}: not a UTF-8 text file") from err


def read_namespace(path: Path) -> dict[str, Any]:
    """The ``mailstack:`` keys of a stack file, prefix stripped, secure values marked."""
    document = parse(read_text(path), str(path))
    if document is None:
        raise StackFileError(f"{path}: empty: a stack file holds its settings under 'config:'")
    if not isinstance(document, dict):
        raise StackFileError(f"{path}: a stack file is a mapping with a 'config:' key")
    if "config" not in document:
        found = [str(k) for k in document if str(k).partition(":")[0].lower() == NAMESPACE]
        hint = f" (found {', '.join(quote(k) for k in found[:3])} at the top level: indent them under config:)" if found else ""
        raise StackFileError(f"{path}: no 'config:' key: a Pulumi stack file holds its settings under config:{hint}")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigErrors([ConfigError((), "the stack file's 'config:' must be a mapping")])
    problems = namespace_typos(config, str(path))
    if problems:
        raise ConfigErrors(problems)
    raw: dict[str, Any] = {}
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if namespace != NAMESPACE or not name:
            continue
        encrypted = isinstance(value, dict) and set(value) == {"secure"} and isinstance(value["secure"], str)
        raw[name] = Secret(name) if encrypted else value
    return raw


class NamespaceTypo(ConfigError):
    """A config key meant for mailstack but outside its namespace (``mailstak:dmarc``);
    reported with the file, since it names no ``mailstack:`` key."""

    def __init__(self, source: str, message: str) -> None:
        self.path = ()
        self.message = message
        MailstackError.__init__(self, f"{source}: {message}")


def namespace_typos(config: dict[Any, Any], source: str) -> list[ConfigError]:
    """Keys whose namespace is a near-miss of ``mailstack`` (case, a letter or two,
    ``.`` for ``:``) or that lack a namespace but name a mailstack key."""
    from mailstack.config.stack import KNOWN_KEYS

    problems: list[ConfigError] = []
    for key in config:
        text = str(key)
        if len(text) > 200:
            continue  # no near-miss of a key is that long; the key is simply foreign
        namespace, colon, name = text.partition(":")
        if namespace == NAMESPACE:
            if not name:
                problems.append(NamespaceTypo(source, f"config key {quote(text)} names no mailstack key"))
            continue
        if not colon:
            namespace, dot, name = text.partition(".")
            if not dot:
                namespace, name = "", text
        meant = namespace.lower() == NAMESPACE or (
            namespace and difflib.SequenceMatcher(None, namespace.lower(), NAMESPACE).ratio() >= 0.8
        )
        if not meant and not (namespace == "" and name in KNOWN_KEYS):
            continue
        close = difflib.get_close_matches(name, sorted(KNOWN_KEYS), n=1, cutoff=0.6)
        target = f"{NAMESPACE}:{close[0] if close else name}"
        problems.append(NamespaceTypo(source, f"config key {quote(text)} is not in the mailstack namespace and would be ignored; did you mean {target}?"))
    return problems


def load(path: Path) -> MailDomain:
    """Read and validate a stack file into a MailDomain."""
    from mailstack.config.stack import from_config

    return from_config(read_namespace(path))


def secret_from_env(key: str) -> str | None:
    """A secret for CLI use: ``MAILSTACK_<KEY>`` (e.g. MAILSTACK_TSIG_SECRET), or
    ``MAILSTACK_<KEY>_FILE`` naming a file. (A stack file holds secrets only
    encrypted, which the CLI cannot read: see docs/configuration.md#secrets.)"""
    env = "MAILSTACK_" + "".join("_" + c if c.isupper() else c.upper() for c in key)
    if env in os.environ:
        return os.environ[env]
    if env + "_FILE" in os.environ:
        try:
            return Path(os.environ[env + "_FILE"]).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise MailstackError(f"{env}_FILE: cannot read {os.environ[env + '_FILE']}: {getattr(err, 'strerror', None) or 'not UTF-8'}") from err
    return None
