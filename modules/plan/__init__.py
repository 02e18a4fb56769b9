"""The record plan: what a validated declaration publishes, computed once per run.

``build(stack)`` returns a ``Plan``: the records (``records``), checked as a whole
(``conflicts``), with the facts derived on the way (``facts``: the names mail is sent
from, the MX hosts, the managed zones, the relay domains). Render, the providers, the
lab, the policy pack and the checks all read that one value.
"""

from mailstack.plan.result import Plan, build

__all__ = ["Plan", "build"]
