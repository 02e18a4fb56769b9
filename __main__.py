"""The Pulumi program: wiring only. Config → MailDomain → plan → components → exports."""

import time

import pulumi

from mailstack import plan
from mailstack.config.stack import from_config
from mailstack.core.errors import ConfigErrors, MailstackError
from mailstack.rules.dkim_rotation import decide
from mailstack.providers import dkim_rotation as rotation
from mailstack.providers import engine_config
from mailstack.providers.cloudflare import CloudflareRecords, CloudflareRecordsArgs

try:
    stack = from_config(engine_config.read_namespace())
    planned = plan.build(stack)
except ConfigErrors as err:
    # A clean message naming each key, no traceback (pulumi.RunError), before any
    # resource is registered.
    raise pulumi.RunError("\n".join(str(error) for error in err.errors)) from err
except MailstackError as err:
    raise pulumi.RunError(str(err)) from err

#: What Odoo's settings wait for: the records it will be told to use, and the gateways.
odoo_after: list[pulumi.Resource] = []

dkim_key = None
dkim_previous_key = None
#: What the DNS components wait for: the DKIM rotation's guard (docs/gateway.md).
dns_after: list[pulumi.Resource] = []
if planned.needs_gateway_key or stack.gateways:
    # One key per selector in use; during a rotation (dkim.previous) the phase decides
    # which one OpenDKIM signs with, from what every authoritative server serves now.
    dkim_keys = rotation.keys(stack)
    dkim_key = dkim_keys[stack.dkim.selector]
    dkim_previous_key = dkim_keys.get(stack.dkim.previous or "")
    observed = rotation.observe(planned)
    planned = planned.with_rotation(decide(stack.dkim, stack.dns.ttl, observed, None, time.time()))
    dkim_rotation = rotation.DkimRotation("dkim-rotation", stack, observed)
    dns_after.append(dkim_rotation)
    pulumi.export("dkimRotation", dkim_rotation.state)
    pulumi.export("dkimPhase", planned.rotation.phase.value if planned.rotation else "steady")

if stack.dns.provider == "cloudflare":
    dns = CloudflareRecords(
        "mail",
        CloudflareRecordsArgs(
            records=planned.records,
            zones=planned.zones,
            gateway_public_key_pem=dkim_key.public_key_pem if dkim_key else None,
            previous_selector=stack.dkim.previous,
            previous_public_key_pem=dkim_previous_key.public_key_pem if dkim_previous_key else None,
            allow_delete=stack.dns.allow_delete,
            adopt=dict(stack.dns.adopt),
        ),
        opts=pulumi.ResourceOptions(depends_on=dns_after),
    )
    pulumi.export("zoneIds", dns.zone_ids)
    odoo_after.append(dns)
elif stack.dns.provider == "rfc2136":
    from mailstack.providers.rfc2136_records import Rfc2136Records, Rfc2136RecordsArgs

    tsig_secret = engine_config.secret("tsigSecret")
    if tsig_secret is None:
        raise pulumi.RunError("mailstack:tsigSecret: is required for provider rfc2136 (pulumi config set --secret mailstack:tsigSecret <base64>)")
    rfc2136_dns = Rfc2136Records(
        "mail",
        Rfc2136RecordsArgs(
            records=planned.records,
            zones=planned.zones,
            server=stack.dns.server or "",
            port=stack.dns.port,
            tsig_key_name=stack.dns.tsig_key_name or "",
            tsig_algorithm=stack.dns.tsig_algorithm,
            tsig_secret=tsig_secret,
            gateway_public_key_pem=dkim_key.public_key_pem if dkim_key else None,
            previous_selector=stack.dkim.previous,
            previous_public_key_pem=dkim_previous_key.public_key_pem if dkim_previous_key else None,
            allow_delete=stack.dns.allow_delete,
            adopt=dict(stack.dns.adopt),
        ),
        opts=pulumi.ResourceOptions(depends_on=dns_after),
    )
    odoo_after.append(rfc2136_dns)

if dkim_key is not None and stack.gateway is not None and stack.gateway.deploy:
    from mailstack.providers.gateway import GatewayArgs, GatewayServer

    ssh_private_key = engine_config.secret("sshPrivateKey")
    odoo_password = engine_config.secret("odooPassword")
    smtp_auth_password = engine_config.secret("smtpAuthPassword")
    for gateway in stack.gateways:
        odoo_after.append(GatewayServer(
            f"gateway-{gateway.hostname}",
            GatewayArgs(
                plan=planned,
                gateway=gateway,
                # The key of the selector the rotation's phase signs with.
                dkim_private_key_pem=(dkim_previous_key or dkim_key).private_key_pem
                if planned.signing_selector == stack.dkim.previous else dkim_key.private_key_pem,
                ssh_private_key=ssh_private_key,
                odoo_password=odoo_password,
                smtp_auth_password=smtp_auth_password,
            ),
        ))

if stack.odoo.manage:
    # Odoo's mail settings (odoo.manage), told to Odoo only after the DNS records and
    # the gateways it will use exist.
    from mailstack.odoo.desired import desired
    from mailstack.providers.odoo import OdooSettings, OdooSettingsArgs

    odoo_admin_password = engine_config.secret("odooPassword")
    if odoo_admin_password is None:
        raise pulumi.RunError("mailstack:odooPassword: is required when mailstack:odoo.manage is set "
                              "(pulumi config set --secret mailstack:odooPassword ...)")
    OdooSettings(
        "odoo",
        OdooSettingsArgs(
            desired=desired(planned),
            url=stack.odoo.rpc_url or "",
            database=stack.odoo.database or "",
            login=stack.odoo.login,
            password=odoo_admin_password,
            adopt=stack.odoo.adopt,
            smtp_password=engine_config.secret("smtpAuthPassword"),
            imap_password=engine_config.secret("imapPassword"),
            depends_on=odoo_after,
        ),
    )

pulumi.export("records", [r.as_json() for r in planned.records])
if dkim_key is not None:
    pulumi.export("dkimSelector", stack.dkim.selector)
    pulumi.export("dkimSigningSelector", planned.signing_selector)
    pulumi.export("dkimPublicKeyPem", dkim_key.public_key_pem)
if dkim_previous_key is not None:
    pulumi.export("dkimPreviousPublicKeyPem", dkim_previous_key.public_key_pem)
