"""The mailstack policy pack's entry point: builds the PolicyPack and serves it.

Nothing else belongs here: constructing ``PolicyPack`` starts the analyzer's gRPC
server and blocks forever, so tests import ``modules.policies`` instead. The project
root is put on ``sys.path`` so the pack runs from a checkout without ``pip install``.
"""

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from modules.policies import PACK_NAME, all_policies  # noqa: E402

PolicyPack(
    name=PACK_NAME,
    policies=all_policies(),
    enforcement_level=EnforcementLevel.MANDATORY,
    description="Refuse DNS changes that would break the mail of an Odoo deployment.",
)
