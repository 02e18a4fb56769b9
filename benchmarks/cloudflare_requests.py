"""How many Cloudflare API requests a first ``pulumi up`` makes, per example stack and at scale.

Cloudflare allows 1,200 API requests per 5 minutes per user/token; past that every
request is refused for the next 5 minutes (docs/records.md). This script runs the real
Pulumi program (``__main__.py``) under Pulumi's mocks for every Cloudflare stack in
``stacks/`` and for a synthetic 100-domain stack (a multi-company stack with 99 alias
domains, each its own zone), counts what the program registers — ``cloudflare.DnsRecord``
resources and ``getZone`` lookups — and prints the requests a first ``pulumi up`` makes:

- the preview runs the program: one ``getZone`` request per zone;
- the update runs it again: one ``getZone`` per zone, then one create (POST) per record;
- an adopted record (``mailstack:dns.adopt``) is one read (GET) instead, plus one update
  (PATCH) when its inputs differ from what Cloudflare holds;
- ``pulumi refresh`` (or ``up --refresh``) reads every record once (GET).

and, for the 100-domain stack, the request rate ``--parallel N`` allows at a given
latency per request (N operations in flight, each taking that long). Cloudflare's
latency cannot be measured from this machine (no internet), so the rates are computed
for 0.1, 0.25 and 0.5 s. Run: ``python benchmarks/cloudflare_requests.py``.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailstack.config import project  # noqa: E402
from tests.pulumi_harness import ZONE_TOKEN, run_program, stack_config  # noqa: E402

RECORD = "cloudflare:index/dnsRecord:DnsRecord"
LIMIT, WINDOW = 1200, 300.0  # requests per 5 minutes per token


def counts(config: dict[str, str], secrets: list[str], name: str) -> tuple[int, int]:
    """(records, zone lookups) the program registers for one stack."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = run_program(config=config, secret_keys=secrets)
    records = len(run.of_type(RECORD))
    zones = sum(1 for call in run.calls if call.token == ZONE_TOKEN)
    return records, zones


def first_up(records: int, zones: int) -> int:
    return zones + zones + records


def synthetic(domains: int) -> tuple[dict[str, str], list[str]]:
    config, secrets = stack_config(project.at(ROOT).stack_path("multi-company"))
    config["mailstack:aliasDomains"] = json.dumps([f"brand-{i}.example" for i in range(domains - 1)])
    return config, secrets


def main() -> None:
    print("== first `pulumi up` on Cloudflare: requests (preview getZone + update getZone + one create per record)")
    rows = []
    for path in project.at(ROOT).stacks():
        config, secrets = stack_config(path)
        if json.loads(config.get("mailstack:dns", "{}")).get("provider", "cloudflare") != "cloudflare":
            continue
        rows.append((path.name, *counts(config, secrets, path.name)))
    for domains in (100, 250):
        config, secrets = synthetic(domains)
        rows.append((f"{domains} domains (multi-company, {domains - 1} alias zones)", *counts(config, secrets, "synthetic")))
    for name, records, zones in rows:
        total = first_up(records, zones)
        print(f"{name:<48} {records:5d} records {zones:4d} zones  first up {total:5d} requests  refresh {records:5d}  "
              f"{'under' if total <= LIMIT else 'OVER'} {LIMIT} per 5 min")
    for name, records, zones in rows[-2:]:
        rate(name, first_up(records, zones))
    records, zones = rows[-2][1], rows[-2][2]
    again = 2 * zones + records
    print(f"\na later `pulumi up --refresh` of the 100-domain stack: {again} requests (getZone twice, one read per record); "
          f"right after the first up that is {first_up(records, zones) + again} within minutes")
    print(f"sustained limit {LIMIT / WINDOW:.0f} requests/s: --parallel N at L seconds per request makes N/L per second, "
          "so N <= 4 x L (1 at 0.25 s, 2 at 0.5 s)")


def rate(name: str, total: int) -> None:
    print(f"\n== {name}: {total} requests; the limit allows {LIMIT / WINDOW:.0f} requests/s sustained")
    for latency in (0.1, 0.25, 0.5):
        line = [f"latency {latency:4.2f}s:"]
        for parallel in (1, 2, 4, 8, 16, 64):
            rate = parallel / latency
            seconds = total / rate
            over = rate > LIMIT / WINDOW and total > LIMIT
            line.append(f"-p{parallel:<3d} {rate:6.1f}/s {seconds:6.0f}s{'!' if over else ' '}")
        print("  ".join(line))
    print("  ('!' = faster than 4 requests/s in a run of more than 1,200 requests: the limit is hit)")


if __name__ == "__main__":
    main()
