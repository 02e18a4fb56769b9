"""Options and argument readers several subcommands share, written once: the stack to
read (``--stack``/``--stack-file``/``--project-dir``), the DNS servers to ask
(``--nameserver``/``--timeout``/``--wait``/``--interval``), the gateway's DKIM keys
given as PEM files and what mailstack owned before (``--owned``). Each reader turns a
bad argument into a MailstackError naming it.

Building a parser imports nothing heavy (the config reader, dnspython and cryptography
are imported by the readers, when a command runs), so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from mailstack.checks.defaults import DEFAULT_TIMEOUT
from mailstack.core.errors import MailstackError

if TYPE_CHECKING:
    from mailstack.config import project
    from mailstack.core.model import MailDomain
    from mailstack.core.record import Record


def add_stack_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> argparse._MutuallyExclusiveGroup:
    """``--stack NAME | --stack-file PATH`` and ``--project-dir DIR``."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--stack", metavar="NAME", help="read Pulumi.NAME.yaml of the project's stack directory")
    group.add_argument("--stack-file", metavar="PATH", type=Path, help="read any Pulumi stack file")
    add_project_argument(parser)
    return group


def add_project_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project-dir", metavar="DIR", type=Path,
        help="the Pulumi project whose stacks --stack names (default: the nearest Pulumi.yaml from the working directory up)",
    )


def project_of(args: argparse.Namespace) -> project.Project:
    """The project named by ``--project-dir``, else the one the command runs in."""
    from mailstack.config import project

    directory = getattr(args, "project_dir", None)
    return project.at(directory) if directory else project.find()


def stack_path(args: argparse.Namespace, name: str) -> Path:
    """The stack file of ``--stack NAME`` in the project; MailstackError when missing."""
    found = project_of(args)
    path = found.stack_path(name)
    if not path.is_file():
        known = ", ".join(found.stack_names()) or "none"
        raise MailstackError(f"--stack {name}: no such stack file {path} (stacks of this project: {known})")
    return path


def stack_file_of(args: argparse.Namespace) -> Path:
    """The stack file named by --stack or --stack-file."""
    if getattr(args, "stack_file", None):
        return Path(args.stack_file)
    return stack_path(args, args.stack)


def load_stack(args: argparse.Namespace) -> MailDomain:
    """Read and validate the stack named on the command line."""
    from mailstack.config import stackfile

    return stackfile.load(stack_file_of(args))


def add_dns_arguments(parser: argparse.ArgumentParser, *, wait: bool = True) -> None:
    """``--nameserver``, ``--timeout`` and (``wait``) ``--wait``, ``--interval``."""
    parser.add_argument("--nameserver", metavar="ADDR[:PORT]", action="append", default=[], help="ask this server (repeatable); default: the system resolver")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=DEFAULT_TIMEOUT, help=f"per DNS query (default: {DEFAULT_TIMEOUT:g})")
    if wait:
        parser.add_argument("--wait", metavar="SECONDS", type=float, help="first poll the zones' authoritative servers (or --nameserver) until they serve the plan, at most this long")
        parser.add_argument("--interval", metavar="SECONDS", type=float, default=2.0, help="pause between polls with --wait (default: 2)")


def read_text(path: Path | None, option: str) -> str | None:
    """The text of a file named by ``option``; None when the option is not given."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not a UTF-8 text file"
        raise MailstackError(f"{option} {path}: {reason}") from err


def gateway_public_key(path: Path | None) -> str | None:
    """``--dkim-public-key PEM``: the gateway's DKIM public key, checked to be one."""
    from mailstack.rules import dkim

    key = read_text(path, "--dkim-public-key")
    if key is not None:
        try:
            dkim.public_key_base64(key)
        except dkim.DkimKeyError as err:
            raise MailstackError(f"--dkim-public-key {path}: {err}") from err
    return key


def add_owned_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--owned", metavar="FILE", type=Path,
        help="the records mailstack wrote before: `pulumi stack output records --json`, `mailstack records "
             "--format json` of the deployed stack, or the lab's records.json (default: none, so nothing live is "
             "taken for mailstack's)",
    )


def owned_records(path: Path | None) -> list[Record]:
    """``--owned FILE``: a JSON list of records (``name, type, content, ttl, priority``),
    or a journal ``{"owned": [...], "pending": [...]}`` of ``{zone, name, type, ttl, value}``."""
    from mailstack.core import zonefile
    from mailstack.core.record import Record

    text = read_text(path, "--owned")
    if text is None:
        return []
    try:
        data = json.loads(text)
        if isinstance(data, dict) and ("owned" in data or "pending" in data):
            items = [*(data.get("owned") or []), *(data.get("pending") or [])]
            return [zonefile.from_text(str(i["name"]), str(i["type"]), int(i["ttl"]), str(i["value"])) for i in items]
        if not isinstance(data, list):
            raise ValueError("not a JSON list of records")
        return [Record.from_json(item) for item in data]
    except (ValueError, KeyError, TypeError) as err:
        raise MailstackError(f"--owned {path}: {err}") from err
