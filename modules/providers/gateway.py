"""The Pulumi gateway component: one ``mailstack:gateway:Gateway`` per gateway host.

It deploys over SSH (``pulumi_command.remote``, >= 1.2) what ``mailstack.gateway.render``
renders for the host, in four steps, each a child resource named ``<name>-<part>``; the
shell commands are ``mailstack.providers.gateway_commands``:

1. ``packages``: install postfix, opendkim and python3 (``apt-get update
   --error-on=any``), create the mailgate user, every directory a file is copied into,
   and OpenDKIM's key directory (0750). Re-runs only when its command changes.
2. one ``CopyToRemote`` per rendered file (``StringAsset`` of its text), plus the
   stdlib-only mailgate script; each re-copies when its own text changes.
3. ``dkim-key`` (and ``odoo-password`` when ``mailstack:odooPassword`` is set, and
   ``smtp-auth`` when ``gateway.smtpAuth`` and ``mailstack:smtpAuthPassword`` are): a
   ``remote.Command`` that writes the secret from **stdin** with ``umask 077`` and
   chowns it (``smtp-auth``: ``saslpasswd2 -p`` reads it into the sasldb). Not
   CopyToRemote: that copies with the remote default mode, so a key would be
   world-readable until something chmods it; stdin also keeps the secret out of the
   command line. The PEM comes from the ``tls.PrivateKey`` of ``__main__.py`` (the same
   key whose public half is the DKIM TXT record) and stays a secret output. Their
   ``delete`` removes what they wrote; a new secret replaces them deleting first.
4. ``activate``: check the TLS certificate is on the host, fix modes, ``postmap``,
   ``postfix check``, then restart OpenDKIM, mailstack-aliasd (RCPT validation against
   Odoo's aliases, its stdlib-only script copied beside the mailgate), the resident
   mailgate mailstack-mailgated (``gateway.mailgate.delivery: lmtp``, the default; with
   ``pipe`` a unit left by an earlier deploy is stopped and disabled) and, for
   ``inbound.mode: forward``, postsrsd; reload Postfix and remove a previous
   selector's key; with ``mtaSts.serve: gateway``, test and reload nginx (the
   policy hosts, ``nginx-light`` installed in step 1). Its ``triggers`` are the hash of every rendered file (and of the
   key), so it re-runs when, and only when, what is on the host should change.

The SSH private key is the Pulumi secret ``mailstack:sshPrivateKey`` (else the SSH
agent is used); host, port, user and the host's key (``hostKey``: the deploy refuses any
other) come from ``gateways[].ssh`` of the stack. docs/gateway.md says what each step
does on a Debian 12 host, as tests/test_gateway_deploy.py runs it on one.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from mailstack.core.model import Gateway
from mailstack.gateway import render as render_module
from mailstack.gateway.layout import Layout
from mailstack.plan import Plan
from mailstack.providers import gateway_commands as commands

TYPE = "mailstack:gateway:Gateway"
PACKAGES = ("postfix", "opendkim", "opendkim-tools", "python3", "ssl-cert")
#: Cyrus SASL with sasldb for ``gateway.smtpAuth`` (the password: ``saslpasswd2 -p``, stdin).
SASL_PACKAGES = ("libsasl2-modules", "sasl2-bin")
#: SRS for ``inbound.mode: forward`` (senders rewritten into the stack's domain).
SRS_PACKAGES = ("postsrsd",)
#: The MTA-STS policy hosts (``mtaSts.serve: gateway``): Debian's smallest nginx.
WEB_PACKAGES = ("nginx-light",)


@dataclass
class GatewayArgs:
    """What one gateway host needs; secrets stay Pulumi Outputs."""

    plan: Plan
    gateway: Gateway
    #: The DKIM private key PEM (``tls.PrivateKey.private_key_pem``), a secret.
    dkim_private_key_pem: pulumi.Input[str]
    #: ``mailstack:sshPrivateKey`` (secret); None: the SSH agent.
    ssh_private_key: pulumi.Input[str] | None = None
    #: ``mailstack:odooPassword`` (secret) for the mailgate's password file; None: the
    #: administrator puts the file there (mode 0640 root:<mailgate user>).
    odoo_password: pulumi.Input[str] | None = None
    #: ``mailstack:smtpAuthPassword`` (secret) for ``gateway.smtpAuth``; None: the
    #: administrator runs saslpasswd2 on the host (docs/gateway.md).
    smtp_auth_password: pulumi.Input[str] | None = None
    layout: Layout = field(default_factory=Layout)


def content_hash(files: dict[str, render_module.RenderedFile], mailgate_source: str, *scripts: str) -> str:
    """sha256 over every rendered file (path, mode, text), the mailgate script and any
    other script copied to the host (mailstack-aliasd)."""
    document = json.dumps(
        {"files": [[path, f.mode, f.text] for path, f in sorted(files.items())], "mailgate": mailgate_source, "scripts": list(scripts)},
        sort_keys=True,
    )
    return hashlib.sha256(document.encode()).hexdigest()


def _part(relative: str) -> str:
    """A resource-name part for a rendered path: ``postfix/main.cf`` → ``postfix-main-cf``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", relative).strip("-").lower()


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _secret_file(name: str, connection: remote.ConnectionArgs, path: str, owner: str, group: str, mode: str,
                 secret: pulumi.Output[str], triggers: list[pulumi.Input[str]], parent: pulumi.Resource,
                 packages: pulumi.Resource) -> remote.Command:
    """A secret written to ``path`` from stdin, removed by its delete. A change of its
    ``triggers`` replaces it deleting the old file first: created first, the old
    resource's delete would remove the file just written to the same path (a new
    secret, or ``pulumi up --replace``)."""
    return remote.Command(
        name,
        connection=connection,
        create=commands.write_secret(path, owner, group, mode, posixpath.dirname(path)),
        delete=commands.remove_file(path),
        stdin=secret,
        triggers=triggers,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[packages], additional_secret_outputs=["stdin"],
                                    delete_before_replace=True),
    )


class GatewayServer(pulumi.ComponentResource):
    """Configure one gateway host from the stack; see the module docstring."""

    content_hash: str
    remote_paths: list[str]

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        stack, gateway, layout = args.plan.stack, args.gateway, args.layout
        files = render_module.render(args.plan, gateway=gateway, layout=layout)  # no key: pushed as a secret below
        mailgate_source = render_module.mailgate_source()
        aliasd = render_module.uses_aliasd(files)
        mailgated = render_module.uses_mailgated(files)
        forward = stack.forwards_through_gateways
        web = render_module.NGINX_SITE in files
        scripts = [*([render_module.aliasd_source()] if aliasd else []), *([render_module.mailgated_source()] if mailgated else [])]
        self.content_hash = content_hash(files, mailgate_source, *scripts)
        self.remote_paths = [layout.host_path(relative) for relative in files]
        connection = remote.ConnectionArgs(
            host=gateway.ssh.host or gateway.ipv4,
            port=float(gateway.ssh.port),
            user=gateway.ssh.user,
            private_key=pulumi.Output.secret(args.ssh_private_key) if args.ssh_private_key is not None else None,
            host_key=gateway.ssh.host_key,
        )
        child = pulumi.ResourceOptions(parent=self)
        opendkim_user = layout.opendkim_user
        mailgate_script = layout.mailgate_command[-1]
        key_path = layout.host_path(render_module.key_path(args.plan.signing_selector))

        package_list = [*PACKAGES, *(SASL_PACKAGES if stack.gateway and stack.gateway.smtp_auth else ()), *(SRS_PACKAGES if forward else ()), *(WEB_PACKAGES if web else ())]
        aliasd_script = layout.aliasd_command[-1]
        mailgated_script = layout.mailgated_command[-1]
        # Each copied script (beside the mailgate) by its path on the host.
        copied = {**({aliasd_script: render_module.aliasd_source()} if aliasd else {}),
                  **({mailgated_script: render_module.mailgated_source()} if mailgated else {})}
        packages = remote.Command(
            f"{name}-packages",
            connection=connection,
            create=commands.packages(
                package_list, layout.mailgate_user,
                [posixpath.dirname(path) for path in (*self.remote_paths, mailgate_script, *copied)],
                posixpath.dirname(key_path), opendkim_user,
            ),
            opts=child,
        )
        after_packages = pulumi.ResourceOptions(parent=self, depends_on=[packages])

        copies: list[pulumi.Resource] = []
        for relative, rendered in files.items():
            copies.append(remote.CopyToRemote(
                f"{name}-{_part(relative)}",
                connection=connection,
                remote_path=layout.host_path(relative),
                source=pulumi.StringAsset(rendered.text),
                triggers=[hashlib.sha256(rendered.text.encode()).hexdigest()],
                opts=after_packages,
            ))
        for script, text in copied.items():
            copies.append(remote.CopyToRemote(
                f"{name}-{'aliasd' if script == aliasd_script else 'mailgated'}",
                connection=connection,
                remote_path=script,
                source=pulumi.StringAsset(text),
                triggers=[hashlib.sha256(text.encode()).hexdigest()],
                opts=after_packages,
            ))
        copies.append(remote.CopyToRemote(
            f"{name}-mailgate",
            connection=connection,
            remote_path=mailgate_script,
            source=pulumi.StringAsset(mailgate_source),
            triggers=[hashlib.sha256(mailgate_source.encode()).hexdigest()],
            opts=after_packages,
        ))

        self.dkim_private_key_pem = pulumi.Output.secret(args.dkim_private_key_pem)
        key_hash = self.dkim_private_key_pem.apply(_sha256)
        # A new selector changes the path only: an update writes the key there, and
        # activation removes the old selector's key once OpenDKIM runs on the new tables.
        self.dkim_key = _secret_file(f"{name}-dkim-key", connection, key_path, opendkim_user, opendkim_user, "0600",
                                     self.dkim_private_key_pem, [key_hash], self, packages)
        secrets: list[pulumi.Resource] = [self.dkim_key]
        if args.odoo_password is not None and stack.gateway is not None:
            password = pulumi.Output.secret(args.odoo_password)
            password_file = stack.gateway.mailgate.password_file
            secrets.append(_secret_file(f"{name}-odoo-password", connection, password_file, "root", layout.mailgate_user,
                                        "0640", password, [password.apply(_sha256), password_file], self, packages))

        if args.smtp_auth_password is not None and stack.gateway is not None and stack.gateway.smtp_auth:
            sasl_password = pulumi.Output.secret(args.smtp_auth_password)
            sasl = (layout.sasldb_path, gateway.hostname, stack.gateway.smtp_auth.user)
            secrets.append(remote.Command(
                f"{name}-smtp-auth",
                connection=connection,
                create=commands.sasl_password(*sasl),
                delete=commands.remove_sasl_user(*sasl),
                stdin=sasl_password,
                # Any change replaces it, deleting the old entry first: created first, the
                # old resource's delete would remove the user just written.
                triggers=[sasl_password.apply(_sha256), *sasl],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[packages], additional_secret_outputs=["stdin"],
                                            delete_before_replace=True),
            ))

        public = [path for path, f in zip(self.remote_paths, files.values()) if not f.secret]
        maps = [layout.host_path(r) for r in render_module.POSTMAP_FILES if r in files]
        settings = stack.gateway
        tls_files = [("mailstack:gateway.tls.cert", settings.tls.cert), ("mailstack:gateway.tls.key", settings.tls.key)] if settings else []
        self.activate = remote.Command(
            f"{name}-activate",
            connection=connection,
            create=commands.activate(public, [mailgate_script, *copied], maps, layout.postfix_dir, tls_files,
                                     posixpath.dirname(key_path), f"{layout.opendkim_dir}/KeyTable",
                                     services=[*(["mailstack-aliasd"] if aliasd else []), *(["mailstack-mailgate"] if mailgated else []),
                                               *(["postsrsd"] if forward else [])],
                                     disable=[] if mailgated else ["mailstack-mailgate"], web=web),
            triggers=[self.content_hash, key_hash],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*copies, *secrets]),
        )
        self.register_outputs({"contentHash": self.content_hash, "host": gateway.hostname, "files": self.remote_paths})
