"""The Pulumi program: wiring only. Config → MailDomain → components → exports."""

import pulumi
import pulumi_tls as tls

from modules import pulumi_config
from modules.cloudflare_dns import CloudflareRecords, CloudflareRecordsArgs
from modules.config import from_config
from modules.errors import MailstackError
from modules.plan import plan

try:
    stack = from_config(pulumi_config.read_namespace())
except MailstackError as err:
    # A clean message naming the key, no traceback (pulumi.RunError), before any
    # resource is registered.
    raise pulumi.RunError(str(err)) from err
records = plan(stack)

dkim_key = None
if any(r.needs_gateway_key for r in records) or stack.gateways:
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
            records=records,
            zones={r.name: stack.dns.zone_of(r.name) for r in records},
            gateway_public_key_pem=dkim_key.public_key_pem if dkim_key else None,
            allow_delete=stack.dns.allow_delete,
        ),
    )
    pulumi.export("zoneIds", dns.zone_ids)
elif stack.dns.provider == "rfc2136":
    from modules.rfc2136_dns import Rfc2136Records, Rfc2136RecordsArgs

    tsig_secret = pulumi_config.secret("tsigSecret")
    if tsig_secret is None:
        raise pulumi.RunError("mailstack:tsigSecret: is required for provider rfc2136 (pulumi config set --secret mailstack:tsigSecret <base64>)")
    Rfc2136Records(
        "mail",
        Rfc2136RecordsArgs(
            records=records,
            zones={r.name: stack.dns.zone_of(r.name) for r in records},
            server=stack.dns.server or "",
            port=stack.dns.port,
            tsig_key_name=stack.dns.tsig_key_name or "",
            tsig_algorithm=stack.dns.tsig_algorithm,
            tsig_secret=tsig_secret,
            gateway_public_key_pem=dkim_key.public_key_pem if dkim_key else None,
            allow_delete=stack.dns.allow_delete,
        ),
    )

if dkim_key is not None and stack.gateway is not None and stack.gateway.deploy:
    from modules.gateway_component import GatewayArgs, GatewayServer

    ssh_private_key = pulumi_config.secret("sshPrivateKey")
    odoo_password = pulumi_config.secret("odooPassword")
    smtp_auth_password = pulumi_config.secret("smtpAuthPassword")
    for gateway in stack.gateways:
        GatewayServer(
            f"gateway-{gateway.hostname}",
            GatewayArgs(
                stack=stack,
                gateway=gateway,
                dkim_private_key_pem=dkim_key.private_key_pem,
                ssh_private_key=ssh_private_key,
                odoo_password=odoo_password,
                smtp_auth_password=smtp_auth_password,
            ),
        )

pulumi.export("records", [r.as_json() for r in records])
if dkim_key is not None:
    pulumi.export("dkimSelector", stack.dkim.selector)
    pulumi.export("dkimPublicKeyPem", dkim_key.public_key_pem)
