"""``mailstack render``: write the gateway servers' configuration rendered from a stack."""

from __future__ import annotations

import argparse
from pathlib import Path

from mailstack import plan
from mailstack.cli import options, rotation
from mailstack.cli.codes import EXIT_OK
from mailstack.core import names
from mailstack.core.errors import ConfigError, ConfigErrors, MailstackError
from mailstack.gateway import render

HELP = """\
Render the configuration of every gateway host of a stack: Postfix (main.cf,
master.cf, transport and recipient maps), OpenDKIM (opendkim.conf, KeyTable,
SigningTable, TrustedHosts), the mailgate's config, the mail part of Odoo's
odoo.conf and the MTA-STS policy. Each host's files go to DIR/<hostname>/. Secret
files (the DKIM private key, given with --dkim-private-key) are written 0600,
everything else 0644. Nothing is written unless the whole stack renders.

During a DKIM rotation (dkim.previous) OpenDKIM signs with the previous selector until
every authoritative server serves the new key. With --dkim-rotation FILE the servers
are asked, the phase decided, and the switch time recorded in FILE (the CLI's place for
the rotation state; `mailstack plan`, `diff` and `check` read it); without it the
previous selector signs. The key file written is the signing selector's:
--dkim-private-key (dkim.selector) or --dkim-previous-private-key (dkim.previous)."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "render",
        help="render the gateway servers' configuration",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_stack_arguments(parser)
    parser.add_argument("--out", metavar="DIR", type=Path, required=True, help="directory to write into")
    parser.add_argument("--gateway", metavar="HOSTNAME", help="render only this gateway host")
    parser.add_argument(
        "--dkim-private-key", metavar="PEM", type=Path,
        help="the DKIM private key (PEM file) to include as opendkim/keys/<selector>.private",
    )
    parser.add_argument("--dkim-previous-private-key", metavar="PEM", type=Path,
                        help="during a DKIM rotation: dkim.previous's private key, written while that selector signs")
    parser.add_argument("--dkim-rotation", metavar="FILE", type=Path,
                        help="ask the authoritative servers, decide the DKIM rotation's phase and record it in FILE (JSON)")
    options.add_dns_arguments(parser, wait=False)
    parser.set_defaults(handler=run)


def _check_out(out: Path) -> None:
    """``--out`` must be a directory or a path one can be created at."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                what = "is not a directory" if path == out else f"cannot hold a directory: {path} is a file"
                raise MailstackError(f"--out {out}: {what}")
            return


def run(args: argparse.Namespace) -> int:
    stack = options.load_stack(args)
    if not stack.gateways:
        raise ConfigErrors([ConfigError(("gateways",), "the stack declares no gateway: there is no gateway configuration to render")])
    _check_out(args.out)
    key = options.read_text(args.dkim_private_key, "--dkim-private-key")
    gateways = stack.gateways
    if args.gateway:
        gateways = tuple(g for g in stack.gateways if g.hostname == names.normalize(args.gateway))
        if not gateways:
            known = ", ".join(g.hostname for g in stack.gateways)
            raise MailstackError(f"--gateway {args.gateway}: not a gateway of this stack ({known})")
    planned = plan.build(stack)
    if args.dkim_rotation is not None and stack.dkim.previous is not None:
        planned = rotation.record(args, planned)
    if planned.signing_selector != stack.dkim.selector:
        if key is not None and args.dkim_previous_private_key is None:
            raise MailstackError(
                f"--dkim-private-key: {planned.signing_selector} (dkim.previous) signs until every authoritative server serves "
                f"{stack.dkim.selector}'s key: give its key with --dkim-previous-private-key (and --dkim-rotation FILE to switch)"
            )
        key = options.read_text(args.dkim_previous_private_key, "--dkim-previous-private-key")
    # Render every host first: an error leaves nothing half-written.
    rendered = {g.hostname: render.render(planned, dkim_private_key_pem=key, gateway=g) for g in gateways}
    for hostname, files in rendered.items():
        try:
            written = render.write(files, args.out / hostname)
        except OSError as err:
            raise MailstackError(f"--out {args.out}: cannot write there: {err.strerror or err}") from err
        for path in written:
            mode = files[str(path.relative_to(args.out / hostname))].mode
            print(f"{mode:04o} {path}")
    return EXIT_OK
