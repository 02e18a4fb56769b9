"""The gateway role: one private Postfix + OpenDKIM per declared gateway host.

Each gateway of the stack (primary and backup MX alike) runs the files
``mailstack.gateway.render`` produces for *that* host, from the plan of the translated
stack: its own address(es) on the namespace's lo, its own certificate from the lab
CA, the mailgate into the Odoo stand-in as the dedicated user ``mslab-mailgate`` (the
resident mailstack-mailgated, a process of this role, or Postfix's pipe). Its
directory ``gateway<n>/`` keeps the queue (emptied on every fresh start), the log
(0600, 0700 directory), the DKIM key (0600 opendkim, 0700 directory) and the mailgate's
files with Odoo's password (0600 mslab-mailgate, 0700 directory). With
``gateway.smtpAuth``, ``sasl/sasldb2`` holds Odoo's login (``saslpasswd2 -p``, the
password on stdin as docs/gateway.md tells a real gateway; 0640 root:postfix in a 0750
directory, since smtpd reads it as postfix).

Only lab settings differ from production, as main.cf overrides: the listening
addresses and the source addresses of outgoing SMTP (Postfix would not pick a
loopback alias by itself), so SPF sees the gateway's address.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import subprocess
from functools import partial
from pathlib import Path

from mailstack.core.model import Gateway, MailDomain
from mailstack.gateway import render
from mailstack.gateway.render import RenderedFile, mailgate_source
from mailstack.lab import files, users
from mailstack.lab.aliasd import AliasDaemon
from mailstack.lab.binaries import binary
from mailstack.lab.mailgated import MailgateDaemon
from mailstack.lab.postfix import LabError, OpenDkim, PostfixInstance, lab_layout, postfix_command
from mailstack.lab.postsrsd import Postsrsd
from mailstack.lab.process import accepts, until
from mailstack.lab.state import LabState, private_dir
from mailstack.plan import Plan

SUBMISSION_PORT = render.SUBMISSION_PORT


def role_name(gateway: Gateway) -> str:
    """The role (and its processes' prefix) of one gateway host: ``gateway-<host>``."""
    return f"gateway-{gateway.hostname}"


def workdir(state: LabState, stack: MailDomain, gateway: Gateway) -> Path:
    """``gateway<n>/`` (n from 1 in declaration order): short, because Postfix's unix
    sockets live below it and a socket path may not exceed 107 bytes."""
    return state.role_dir(f"gateway{stack.gateways.index(gateway) + 1}")


def rendered(state: LabState, plan: Plan, gateway: Gateway) -> dict[str, RenderedFile]:
    """The gateway's files as ``mailstack render`` makes them, with a layout in its
    role directory and the lab's certificate and password file."""
    stack = plan.stack
    work = workdir(state, stack, gateway)
    assert stack.gateway is not None
    settings = dataclasses.replace(
        stack.gateway,
        tls=dataclasses.replace(stack.gateway.tls, cert=str(work / "tls" / "chain.pem"), key=str(work / "tls" / "key.pem")),
        mailgate=dataclasses.replace(stack.gateway.mailgate, password_file=str(work / "mailstack" / "odoo-password")),
    )
    layout = dataclasses.replace(
        lab_layout(work, gateway.ipv4, mailgate_user=users.MAILGATE_USER),
        smtp_service="smtp", submission_service="submission",
        inet_protocols="all" if gateway.ipv6 else "ipv4",
        maillog_file=str(work / "log" / "postfix.log"),
        opendkim_pidfile=str(work / "run" / "opendkim.pid"),
        sasldb_path=str(sasldb(work)),
    )
    pem = state.dkim_private_key(plan.signing_selector, stack.dkim.bits)  # the phase's key during a rotation
    return render.render(plan, settings, pem, gateway=gateway, layout=layout)


def sasldb(work: Path) -> Path:
    return work / "sasl" / "sasldb2"


def _install_sasldb(work: Path, realm: str, user: str, password: str) -> None:
    """Odoo's SMTP AUTH login, as a real gateway gets it (``saslpasswd2 -p``)."""
    postfix_gid = pwd.getpwnam("postfix").pw_gid
    path = sasldb(work)
    private_dir(path.parent, group=postfix_gid, mode=0o750)
    os.chown(path.parent, 0, postfix_gid)
    path.unlink(missing_ok=True)
    result = subprocess.run([binary("saslpasswd2"), "-p", "-c", "-f", str(path), "-u", realm, user], input=password,
                            capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise LabError(f"saslpasswd2 for {user}@{realm}: {(result.stderr or result.stdout).strip()}")
    os.chown(path, 0, postfix_gid)
    path.chmod(0o640)


def _install_mailgate(work: Path, files_: dict[str, RenderedFile], password: str) -> None:
    directory = private_dir(work / "mailstack", owner=users.MAILGATE_USER)
    files.write(directory / "mailgate.conf", files_["mailstack/mailgate.conf"].text, 0o600, owner=users.MAILGATE_USER)
    files.write(directory / "mailgate.py", mailgate_source(), 0o700, owner=users.MAILGATE_USER)
    files.write(directory / "odoo-password", password + "\n", 0o600, owner=users.MAILGATE_USER)


def start(state: LabState, plan: Plan, gateway: Gateway, *, fresh: bool) -> None:
    """OpenDKIM, mailstack-aliasd where the gateway asks Odoo, the resident mailgate
    where Postfix delivers over LMTP, postsrsd where it forwards, then Postfix, for one
    gateway host; ``fresh`` empties its queue first."""
    work = workdir(state, plan.stack, gateway)
    if fresh:
        shutil.rmtree(work / "spool", ignore_errors=True)
    (work / "run").mkdir(exist_ok=True)
    (work / "run").chmod(0o755)
    private_dir(work / "tls")  # smtpd reads its key as root, before dropping privileges
    files.log_file(work / "log", "postfix.log")
    # one kept key for every gateway: the TLSA digest the lab's plan publishes (lab_plan)
    chain, key = state.authority().issue([gateway.hostname], key_pem=state.gateway_tls_key().encode())
    files.write(work / "tls" / "chain.pem", chain)
    files.write(work / "tls" / "key.pem", key, 0o600)
    files_ = rendered(state, plan, gateway)
    _install_mailgate(work, files_, state.odoo_password())
    settings = plan.stack.gateway
    if settings is not None and settings.smtp_auth is not None:
        _install_sasldb(work, gateway.hostname, settings.smtp_auth.user, state.smtp_auth_password())
    name = role_name(gateway)
    start_opendkim(state, work, files_, name)
    addresses = [a for a in (gateway.ipv4, gateway.ipv6) if a]
    overrides = {"inet_interfaces": ", ".join(addresses), "smtp_bind_address": gateway.ipv4}
    if gateway.ipv6:
        overrides["smtp_bind_address6"] = gateway.ipv6
    postfix = PostfixInstance(work, files_, overrides=overrides)
    postfix.install()
    if render.uses_aliasd(files_):
        # Before Postfix accepts mail: its relay_recipient_maps asks mailstack-aliasd,
        # which runs as the mailgate's user (it reads the mailgate's Odoo password).
        aliasd = AliasDaemon(work, files_, user=users.MAILGATE_USER)
        aliasd.start()
        assert aliasd.pid is not None
        state.record(f"{name}-aliasd", aliasd.pid, str(aliasd.conf_path))
    if render.uses_mailgated(files_):
        # Before Postfix delivers: its odoo transport is LMTP to the resident mailgate,
        # run as the mailgate's user on the mailgate's files (as systemd does on a host).
        mailgated = MailgateDaemon(work, files_, user=users.MAILGATE_USER)
        mailgated.start()
        assert mailgated.pid is not None
        state.record(f"{name}-mailgated", mailgated.pid, str(mailgated.conf_path))
    if "postsrsd/postsrsd" in files_:
        # inbound.mode forward: the MX's cleanup asks postsrsd (on this gateway's address)
        # for the SRS sender before it redirects an alias to <db>.odoo.com.
        srs = Postsrsd(private_dir(work / "postsrsd"), files_)
        srs.start()
        assert srs.process is not None
        state.record(f"{name}-postsrsd", srs.process.pid, "postsrsd")
    master = postfix_command(postfix.config_dir, "start")
    state.record(f"{name}-postfix", master, "master")
    for address in addresses:
        for port in (25, SUBMISSION_PORT):
            until(partial(accepts, address, port), 30, f"{gateway.hostname} on {address}:{port}")


def start_opendkim(state: LabState, work: Path, files_: dict[str, RenderedFile], name: str) -> None:
    """The gateway's OpenDKIM on its rendered files, recorded as ``<role>-opendkim``."""
    opendkim = OpenDkim(work, files_, log_path=files.log_file(work / "log", "opendkim.log"))
    opendkim.start()
    assert opendkim.pid is not None
    state.record(f"{name}-opendkim", opendkim.pid, str(opendkim.conf_path))


def signing_changed(state: LabState, plan: Plan, gateway: Gateway) -> bool:
    """Whether the running gateway's OpenDKIM files differ from the plan's (a DKIM
    rotation's switch: SigningTable/KeyTable and the key file of the new selector)."""
    work = workdir(state, plan.stack, gateway)
    wanted = {k: v.text for k, v in rendered(state, plan, gateway).items() if k.startswith("opendkim/")}
    return any(not (work / k).is_file() or (work / k).read_text(encoding="utf-8") != text for k, text in wanted.items())


def resign(state: LabState, plan: Plan, gateway: Gateway) -> None:
    """The redeploy of a running gateway's signing (the deploy's activate step): the
    old key file removed, OpenDKIM started on the phase's tables. The caller stopped
    the old OpenDKIM; Postfix keeps running, its queue with it (mail signed before the
    switch is sent as signed)."""
    work = workdir(state, plan.stack, gateway)
    shutil.rmtree(work / "opendkim" / "keys", ignore_errors=True)
    start_opendkim(state, work, rendered(state, plan, gateway), role_name(gateway))
