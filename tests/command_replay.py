"""Pulumi's remote commands, executed: what a program registers under mocks, run over SSH.

The Pulumi CLI and its command provider cannot be installed here, so this plays both
parts on what the program really registered (``tests.pulumi_harness``):

* the **engine**: a state that persists between ``up`` runs; per resource a diff against
  it — ``create`` (new), ``update`` (inputs changed), ``replace`` (``triggers`` changed:
  create the new one, delete the old one at the end; delete first with
  ``delete_before_replace``), nothing (same inputs) — steps in dependency order,
  independent steps at the same time; after the first failure no new step starts and
  the up fails naming the step; resources gone from the program are deleted at the end,
  in reverse dependency order; ``targets`` and ``replace`` as ``pulumi up --target`` /
  ``--replace``.
* the **provider** (pulumi-command 1.2's remote ``Command`` and ``CopyToRemote``): a new
  SSH connection per operation (asyncssh, dialling again on failure as the provider
  does), the command run without a terminal, ``stdin`` piped then closed, a non-zero exit
  an error "Process exited with status N: running <command>" plus its output;
  ``Command`` update runs ``update`` or else ``create``, delete runs ``delete``;
  ``CopyToRemote`` writes the text over SFTP (creating missing parent directories, as
  1.2 documents; which ones it had to create is recorded) and deletes nothing.

It refuses to connect without the ``hostKey`` the program should pin (pulumi-command
would accept any host key), and records every secret it handled so a test can prove
none of them reached a command line, a step's output or an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import posixpath
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncssh
import pulumi
from pulumi.runtime import rpc

from tests.pulumi_harness import ProgramRun

T = TypeVar("T")
COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
DIALS = 10  # pulumi-command's dialErrorLimit default
# No step of the deploy takes more than a few minutes here (apt installing Postfix and
# OpenDKIM is the longest, ~20 s); a command still running after this is hung, and the
# test fails naming it, with what the host was doing, instead of waiting forever.
COMMAND_TIMEOUT = 300.0
DIAGNOSE = "systemctl list-jobs --no-pager; systemctl --failed --no-pager; ps -eo pid,ppid,stat,etime,args"


@dataclass(frozen=True)
class Resource:
    """One remote resource as the engine received it, secrets unwrapped."""

    name: str
    type: str
    inputs: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    delete_before_replace: bool = False

    @property
    def connection(self) -> Mapping[str, Any]:
        return dict(self.inputs["connection"])

    @property
    def host(self) -> str:
        return str(self.connection["host"])


@dataclass
class Executed:
    """One operation run on a host."""

    name: str
    action: str  # create | update | delete | copy
    command: str
    exit_status: int
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    created_dirs: tuple[str, ...] = ()


class DeployError(Exception):
    """The up failed; ``failures`` maps each failed step to its error text."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        super().__init__("\n".join(f"{name}: {text}" for name, text in failures.items()))


class _StepFailed(Exception):
    pass


def _unwrap(value: Any, secrets: set[str], secret: bool = False) -> Any:
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return _unwrap(value["value"], secrets, True)
    if isinstance(value, dict):
        return {k: _unwrap(v, secrets, secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_unwrap(v, secrets, secret) for v in value]
    if isinstance(value, pulumi.StringAsset):
        return {"text": value.text}
    return value


def capture(run: ProgramRun) -> tuple[dict[str, Resource], set[str]]:
    """The remote resources a program run registered (by name), and every secret value
    among their stdins and SSH keys."""
    by_urn = {r.urn: r for r in run.resources}
    children: dict[str, list[str]] = {}
    for registered in run.resources:
        children.setdefault(registered.parent, []).append(registered.urn)

    def expand(urn: str) -> list[str]:  # depending on a component is depending on its children
        registered = by_urn.get(urn)
        if registered is None or registered.custom:
            return [registered.name] if registered else []
        return [name for child in children.get(urn, []) for name in expand(child)]

    resources: dict[str, Resource] = {}
    secrets: set[str] = set()
    for registered in run.resources:
        if registered.type not in (COMMAND, COPY):
            continue
        inputs = _unwrap(registered.inputs, set())
        for value in (inputs.get("stdin"), inputs["connection"].get("privateKey"), inputs["connection"].get("password")):
            if isinstance(value, str) and value:
                secrets.add(value)
        depends = tuple(sorted({name for urn in registered.dependencies for name in expand(urn)}))
        resources[registered.name] = Resource(registered.name, registered.type, inputs, depends, registered.delete_before_replace)
    return resources, secrets


def diff(old: Resource | None, new: Resource) -> str | None:
    """The engine's step for a resource: create, update, replace or None (unchanged)."""
    if old is None:
        return "create"
    if old.inputs.get("triggers") != new.inputs.get("triggers"):
        return "replace"  # pulumi-command 1.2 marks only ``triggers`` replaceOnChanges
    return "update" if dict(old.inputs) != dict(new.inputs) else None


@dataclass
class Deployer:
    """Runs ups against hosts; ``reach(host, port)`` opens the TCP connection (the
    tests make it inside the lab's network namespace)."""

    reach: Callable[[str, int], socket.socket]
    state: dict[str, Resource] = field(default_factory=dict)
    pending_deletes: list[Resource] = field(default_factory=list)
    executed: list[Executed] = field(default_factory=list)

    def up(self, program: Mapping[str, Resource], *, targets: Iterable[str] | None = None,
           replace: Iterable[str] = ()) -> list[Executed]:
        """One ``pulumi up``: returns what ran; raises DeployError after a failure."""
        return run_async(self._up(dict(program), set(targets) if targets is not None else None, set(replace)))

    async def _up(self, program: dict[str, Resource], targets: set[str] | None, forced: set[str]) -> list[Executed]:
        start = len(self.executed)
        steps = {name: ("replace" if name in forced and name in self.state else diff(self.state.get(name), new))
                 for name, new in program.items() if targets is None or name in targets}
        failures: dict[str, str] = {}
        done: dict[str, asyncio.Event] = {name: asyncio.Event() for name in program}
        ok: dict[str, bool] = {}

        async def step(name: str) -> None:
            new = program[name]
            try:
                for dependency in new.depends_on:
                    if dependency in done:
                        await done[dependency].wait()
                        if not ok.get(dependency, False):
                            return
                action = steps.get(name)
                if action is None or failures:
                    ok[name] = action is None and (name in self.state)
                    return
                old = self.state.get(name)
                if action == "replace" and old is not None and new.delete_before_replace:
                    await self._delete(old)
                if action in ("create", "replace"):
                    await self._create(new)
                else:
                    await self._update(old, new)
                if action == "replace" and old is not None and not new.delete_before_replace:
                    self.pending_deletes.append(old)
                self.state[name] = new
                ok[name] = True
            except _StepFailed as err:
                failures[name] = str(err)
            finally:
                done[name].set()

        await asyncio.gather(*(step(name) for name in program))
        if failures:
            raise DeployError(failures)
        removed = [old for name, old in self.state.items() if name not in program and (targets is None or name in targets)]
        replaced = list(self.pending_deletes)
        for old in _reverse_dependency_order([*replaced, *removed]):
            try:
                await self._delete(old)
            except _StepFailed as err:
                raise DeployError({old.name: str(err)}) from None
            if any(old is r for r in replaced):
                self.pending_deletes = [r for r in self.pending_deletes if r is not old]
            else:
                del self.state[old.name]  # gone from the program: gone from the state
        return self.executed[start:]

    async def _create(self, resource: Resource) -> None:
        if resource.type == COPY:
            await self._copy(resource)
        elif resource.inputs.get("create"):
            await self._run(resource, "create", str(resource.inputs["create"]))

    async def _update(self, old: Resource | None, new: Resource) -> None:
        if new.type == COPY:
            if old is None or old.inputs["source"] != new.inputs["source"] or old.inputs["remotePath"] != new.inputs["remotePath"]:
                await self._copy(new)
            return
        command = new.inputs.get("update") or new.inputs.get("create")
        if command:
            await self._run(new, "update", str(command))

    async def _delete(self, resource: Resource) -> None:
        if resource.type == COMMAND and resource.inputs.get("delete"):
            await self._run(resource, "delete", str(resource.inputs["delete"]))

    async def _connect(self, resource: Resource) -> asyncssh.SSHClientConnection:
        connection = resource.connection
        host_key = connection.get("hostKey")
        if not host_key:
            raise _StepFailed(f"no hostKey in the connection of {resource.name}: pulumi-command would accept any host")
        port = int(connection.get("port") or 22)
        known = ([asyncssh.import_public_key(str(host_key))], [], [])
        keys = [asyncssh.import_private_key(str(connection["privateKey"]))] if connection.get("privateKey") else []
        last: Exception | None = None
        for attempt in range(DIALS):
            try:
                sock = await asyncio.to_thread(self.reach, resource.host, port)
                return await asyncssh.connect(resource.host, port, sock=sock, username=connection.get("user") or "root",
                                              client_keys=keys, known_hosts=known, agent_path=None, connect_timeout=15)
            except (OSError, asyncssh.Error) as err:
                if isinstance(err, (asyncssh.HostKeyNotVerifiable, asyncssh.PermissionDenied)):
                    raise _StepFailed(f"ssh: {err}") from None
                last = err
                await asyncio.sleep(0.1 * (attempt + 1))
        raise _StepFailed(f"ssh: {last}")

    async def _run(self, resource: Resource, action: str, command: str) -> None:
        started = time.monotonic()
        stdin = resource.inputs.get("stdin") or None
        async with await self._connect(resource) as conn:
            try:
                result = await run_command(conn, command, stdin)
            except asyncssh.TimeoutError as err:
                report = await _diagnose(conn)
                raise _StepFailed(f"{resource.name} {action}: still running after {COMMAND_TIMEOUT:.0f} s: {command!r}\n"
                                  f"{err.stdout or ''}{err.stderr or ''}\n--- on the host:\n{report}") from None
        status = result.exit_status if result.exit_status is not None else 255
        record = Executed(resource.name, action, command, status, str(result.stdout or ""), str(result.stderr or ""),
                          time.monotonic() - started)
        self.executed.append(record)
        if status:
            raise _StepFailed(f"Process exited with status {status}: running {command!r}:\n{record.stdout}{record.stderr}")

    async def _copy(self, resource: Resource) -> None:
        started = time.monotonic()
        path, text = str(resource.inputs["remotePath"]), str(resource.inputs["source"]["text"])
        created: list[str] = []
        await asyncio.wait_for(self._copy_over_sftp(resource, path, text, created), COMMAND_TIMEOUT)
        self.executed.append(Executed(resource.name, "copy", path, 0, seconds=time.monotonic() - started, created_dirs=tuple(created)))

    async def _copy_over_sftp(self, resource: Resource, path: str, text: str, created: list[str]) -> None:
        async with await self._connect(resource) as conn, conn.start_sftp_client() as sftp:
            parent = posixpath.dirname(path)
            missing = parent
            while missing not in ("", "/") and not await sftp.exists(missing):
                created.insert(0, missing)
                missing = posixpath.dirname(missing)
            if created:
                await sftp.makedirs(parent, exist_ok=True)
            if await sftp.isdir(path):
                raise _StepFailed(f"remote path {path} is a directory")
            async with sftp.open(path, "wb") as handle:
                await handle.write(text.encode("utf-8"))


async def run_command(conn: asyncssh.SSHClientConnection, command: str, stdin: str | None,
                      timeout: float = COMMAND_TIMEOUT) -> asyncssh.SSHCompletedProcess:
    """Run one command the way pulumi-command does: its ``stdin`` then end of file, or
    no input at all (Go's ssh session without Stdin gives the remote an immediate EOF;
    asyncssh would keep the channel's stdin open), bounded by ``timeout``."""
    if stdin:
        return await conn.run(command, input=stdin, check=False, timeout=timeout)
    return await conn.run(command, stdin=asyncssh.DEVNULL, check=False, timeout=timeout)


async def _diagnose(conn: asyncssh.SSHClientConnection) -> str:
    """What a hung host is doing (its systemd jobs and processes), for the failure message."""
    try:
        result = await conn.run(DIAGNOSE, stdin=asyncssh.DEVNULL, check=False, timeout=20)
        return f"{result.stdout or ''}{result.stderr or ''}"
    except (OSError, asyncssh.Error) as err:
        return f"(could not ask the host: {err})"


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a thread of its own: the Pulumi mocks keep using
    the main thread's event loop, which ``asyncio.run`` there would close. A daemon
    thread: should it ever hang, the test's timeout fails the test and the run goes on
    (an executor's thread would be joined on the way out, hanging the run with it)."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(asyncio.run(coroutine))
        except BaseException as err:  # handed to the caller, whatever it is
            done.set_exception(err)

    threading.Thread(target=run, name="command-replay", daemon=True).start()
    return done.result()


def _reverse_dependency_order(resources: list[Resource]) -> list[Resource]:
    """Dependents before what they depend on (Pulumi deletes in that order)."""
    names = {r.name for r in resources}
    ordered: list[Resource] = []
    remaining = list(resources)
    while remaining:
        for candidate in remaining:
            if not any(candidate.name in other.depends_on for other in remaining if other is not candidate and other.name in names):
                ordered.append(candidate)
                remaining.remove(candidate)
                break
        else:
            ordered += remaining
            break
    return ordered


def leaked(secrets: Iterable[str], texts: Iterable[str]) -> list[str]:
    """The texts (command lines, outputs, errors) that contain any secret, or a line of one."""
    needles = set()
    for secret in secrets:
        needles.add(secret.strip())
        needles.update(line for line in secret.splitlines() if len(line) >= 16 and "-----" not in line)
    return [text for text in texts if any(needle and needle in text for needle in needles)]
