"""The mailstack policy pack's entry point: builds the PolicyPack and serves it.

Nothing else belongs here: constructing ``PolicyPack`` starts the analyzer's gRPC
server and blocks forever, so tests import ``mailstack.policy.policies`` instead. The
policies come from the installed ``mailstack`` package (``scripts/setup`` installs it
into the project's virtual environment, which ``PulumiPolicy.yaml`` names).
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from mailstack.policy.policies import PACK_NAME, all_policies

PolicyPack(
    name=PACK_NAME,
    policies=all_policies(),
    enforcement_level=EnforcementLevel.MANDATORY,
    description="Refuse DNS changes that would break the mail of an Odoo deployment.",
)
