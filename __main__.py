"""The Pulumi program: wiring only. Config → MailDomain → plan → components → exports."""

import pulumi
import pulumi_tls as tls

from mailstack import plan
from mailstack.config.stack import from_config
from mailstack.core.errors import ConfigErrors, MailstackError
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
if planned.needs_gateway_key or stack.gateways:
    dkim_key = tls.PrivateKey(
        "dkim",
        algorithm="RSA",
        rsa_bits=stack.dkim.bits,
        opts=pulumi.ResourceOptions(additional_secret_outputs=["private_key_pem", "private_key_openssh", "private_key_pem_pkcs8"]),
    )

if stack.dns.provider == "cloudflare":
    dns = CloudflareRecords(
        "mail",
        CloudflareRecordsArgs(
            records=planned.records,
            zones=planned.zones,
            gateway_public_key_pem=dkim_key.public_key_pem if dkim_key else None,
            allow_delete=stack.dns.allow_delete,
            adopt=dict(stack.dns.adopt),
        ),
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
            allow_delete=stack.dns.allow_delete,
            adopt=dict(stack.dns.adopt),
        ),
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
                dkim_private_key_pem=dkim_key.private_key_pem,
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
    pulumi.export("dkimPublicKeyPem", dkim_key.public_key_pem)
