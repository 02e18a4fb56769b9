"""Checks at fleet scale: ``mailstack check`` against checkdmarc on N domains, side by side.

``python benchmarks/fleet.py [--sizes 100 1000] [--delays 20 0]`` (as root: it runs a
private BIND). It generates an N-domain stack (one main domain and N-1 alias domains,
each with the full on-premise record set: SPF with an ESP include two levels deep,
DKIM, DMARC with authorised external reports, MX to two gateways with reverse DNS,
TLS-RPT), serves every zone from a private BIND on 127.0.114.1, and puts a delay proxy
(``benchmarks/delay_proxy.py``) in front of it on 127.0.114.53:53 that holds every
answer ``--delays`` milliseconds — a resolver's round trip. Then, for each size and
delay, one process each, all against the proxy:

- ``mailstack check --stack-file`` on the stack (the declared checks: spf dkim dmarc
  mx published),
- ``mailstack check --domains-file`` on the same N domains (the undeclared checks:
  spf dkim dmarc mx — what checkdmarc does),
- ``checkdmarc <domains…> -n 127.0.114.53`` (its domains before ``-n``),

printing wall time, CPU time (user+system, from ``wait4``), peak RSS, the queries the
proxy forwarded, the ratio to checkdmarc, and the lower bound of the work: the longest
chain of dependent queries × the delay, and the single-core CPU time mailstack needed
(a run cannot take less than either). Each mailstack run is repeated (``--repeat``,
default 3) and the fastest is shown with the median wall beside it, because the
machine may be shared: another process taking the CPU stretches a run's wall time, not
its CPU time. checkdmarc runs once (its time is the network's). It asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstack import plan as planning
from mailstack.config.stack import from_config
from mailstack.core.record import Record
from mailstack.lab.bind import BindServer

ROOT = Path(__file__).resolve().parent.parent
BIND_ADDRESS = "127.0.114.1"
PROXY_ADDRESS = "127.0.114.53"
ESP_ZONE = "esp.test"
#: Reverse zones of the gateways' addresses (documentation ranges: data only, never contacted).
GATEWAYS = (("mx1", "192.0.2.10", 10), ("mx2", "198.51.100.20", 20))
DECLARED_GROUPS = ("spf", "dkim", "dmarc", "mx", "published")
UNDECLARED_GROUPS = ("spf", "dkim", "dmarc", "mx")


def domain_names(n: int) -> list[str]:
    return [f"d{i:04d}.test" for i in range(n)]


def stack_config(n: int) -> dict[str, object]:
    """The generated declaration: one main domain and n-1 alias domains."""
    domains = domain_names(n)
    return {
        "domain": domains[0],
        "aliasDomains": domains[1:],
        "odoo": {"hosting": "onpremise", "url": f"https://odoo.{domains[0]}", "database": "production"},
        "outbound": ["gateway", {"spf": f"include:_spf.{ESP_ZONE}"}],
        "inbound": {"mode": "gateway"},
        "gateways": [{"hostname": f"{h}.{domains[0]}", "ipv4": a, "priority": p} for h, a, p in GATEWAYS],
        "dkim": {"selector": "bench", "bits": 2048},
        "dmarc": {"policy": "reject", "rua": [f"mailto:dmarc@{domains[0]}"]},
        "tlsRpt": {"rua": [f"mailto:tls@{domains[0]}"]},
        "dns": {"provider": "cloudflare", "zone": domains[0]},
    }


#: The ESP's SPF: an include two levels deep ending in an ``a:`` term — the longest
#: chain of dependent queries of the work (TXT, TXT, TXT, A).
ESP_LINES = (
    f'_spf 300 IN TXT "v=spf1 include:_spf2.{ESP_ZONE} ip4:203.0.113.0/25 ~all"',
    f'_spf2 300 IN TXT "v=spf1 a:out.{ESP_ZONE} ~all"',
    "out 300 IN A 203.0.113.200",
)
#: Dependent steps: SPF (record, include, nested include, a: term) = 4; MX (MX, then
#: each target's A/AAAA/CNAME) = 2; forward-confirmed reverse DNS (PTR, then A) = 2 —
#: after an MX lookup in --domain mode, so 4; DMARC (record, report authorisation) = 2.
LONGEST_CHAIN = 4


@dataclass
class Fixture:
    workdir: Path
    stack_file: Path
    domains_file: Path
    key_file: Path
    domains: list[str]


def make_fixture(n: int, workdir: Path, key_pem: str) -> tuple[Fixture, dict[str, list[Record]]]:
    """The stack file, the domains file and the zones (records by zone) for n domains."""
    raw = stack_config(n)
    doc = {"config": {f"mailstack:{k}": v for k, v in raw.items()}}
    stack_file = workdir / f"Pulumi.fleet{n}.yaml"
    stack_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    domains = domain_names(n)
    domains_file = workdir / f"domains{n}.txt"
    domains_file.write_text("# generated fleet\n" + "\n".join(domains) + "\n", encoding="utf-8")
    key_file = workdir / "gateway-dkim.pub.pem"
    key_file.write_text(key_pem, encoding="ascii")
    planned = planning.build(from_config(raw), key_pem)
    zones: dict[str, list[Record]] = {}
    for record in planned.records:
        zones.setdefault(planned.zone_of(record.name), []).append(record)
    return Fixture(workdir, stack_file, domains_file, key_file, domains), zones


def start_bind(workdir: Path, zones: dict[str, list[Record]], port: int) -> BindServer:
    bind = BindServer(workdir / "bind", BIND_ADDRESS, port)
    for zone, records in zones.items():
        bind.add_zone(zone, records)
    bind.add_zone(ESP_ZONE, extra_lines=ESP_LINES)
    main = next(iter(sorted(zones)))
    for host, address, _ in GATEWAYS:
        octets = address.split(".")
        bind.add_zone(".".join(reversed(octets[:3])) + ".in-addr.arpa", extra_lines=[f"{octets[3]} 300 IN PTR {host}.{main}."])
    bind.start(timeout=120)
    return bind


@dataclass
class Measured:
    wall: float
    cpu: float
    rss_mb: float
    queries: int
    code: int
    median_wall: float | None = None


def measure(command: list[str], upstream: str, delay_ms: float) -> Measured:
    """Run ``command`` alone against a fresh delay proxy; its wall, CPU and peak RSS."""
    proxy = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "delay_proxy.py"), "--listen", f"{PROXY_ADDRESS}:53",
         "--upstream", upstream, "--delay", str(delay_ms / 1000)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proxy.stdout is not None
        proxy.stdout.readline()  # listening
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
    finally:
        proxy.send_signal(signal.SIGTERM)
        out, _ = proxy.communicate(timeout=30)
    queries = sum(int(word) for word in out.split() if word.isdigit())
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, queries, child.returncode)


def best_of(repeat: int, command: list[str], upstream: str, delay_ms: float) -> Measured:
    """The fastest of ``repeat`` runs, with the median wall of all of them."""
    runs = sorted((measure(command, upstream, delay_ms) for _ in range(repeat)), key=lambda m: m.wall)
    best = runs[0]
    best.median_wall = runs[len(runs) // 2].wall
    return best


def mailstack(*args: str) -> list[str]:
    return [str(ROOT / ".venv" / "bin" / "mailstack"), "check", *args, "--nameserver", PROXY_ADDRESS, "--format", "json", "--output", os.devnull]


def checkdmarc(domains: list[str], output: Path) -> list[str]:
    tool = shutil.which("checkdmarc", path=str(ROOT / ".venv" / "bin")) or "checkdmarc"
    return [tool, *domains, "-n", PROXY_ADDRESS, "-t", "3", "-o", str(output)]


def row(label: str, m: Measured, *, versus: Measured | None = None, bound: float | None = None) -> str:
    extra = ""
    if versus is not None:
        extra += f"  {versus.wall / m.wall:6.1f}x faster than checkdmarc"
    if bound is not None:
        extra += f"  {m.wall / bound:4.2f}x the lower bound"
    median = f" (median {m.median_wall:.2f})" if m.median_wall is not None else ""
    return (f"  {label:31} wall {m.wall:7.2f} s{median}  cpu {m.cpu:6.2f} s  rss {m.rss_mb:4.0f} MB  "
            f"{m.queries:6} queries  exit {m.code}{extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description="mailstack check vs checkdmarc on N domains")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--delays", type=float, nargs="+", default=[20.0, 0.0], help="milliseconds per answer")
    parser.add_argument("--skip-checkdmarc", action="store_true", help="mailstack only (checkdmarc at 1,000 x 20 ms takes minutes)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each mailstack measurement (the fastest is shown)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (a private named)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from tests.ports import free_port

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start")
    with tempfile.TemporaryDirectory(prefix="ms14-fleet-") as tmp:
        for n in args.sizes:
            fixture, zones = make_fixture(n, Path(tmp), key_pem)
            port = free_port(BIND_ADDRESS)
            bind = start_bind(Path(tmp) / f"n{n}", zones, port)
            try:
                upstream = f"{BIND_ADDRESS}:{port}"
                for delay in args.delays:
                    print(f"== {n} domains, +{delay:g} ms per answer")
                    declared = best_of(args.repeat, mailstack("--stack-file", str(fixture.stack_file), "--dkim-public-key", str(fixture.key_file),
                                                 *[a for g in DECLARED_GROUPS for a in ("--only", g)]), upstream, delay)
                    fleet = best_of(args.repeat, mailstack("--domains-file", str(fixture.domains_file),
                                              *[a for g in UNDECLARED_GROUPS for a in ("--only", g)]), upstream, delay)
                    peer = None if args.skip_checkdmarc else measure(checkdmarc(fixture.domains, Path(tmp) / "checkdmarc.json"), upstream, delay)
                    for label, m in (("mailstack check --stack-file", declared), ("mailstack check --domains-file", fleet)):
                        bound = max(LONGEST_CHAIN * delay / 1000, m.cpu)
                        print(row(label, m, versus=peer, bound=bound))
                        print(f"  {'':34} lower bound {bound:.2f} s = max({LONGEST_CHAIN} dependent queries x {delay:g} ms = "
                              f"{LONGEST_CHAIN * delay / 1000:.2f} s, single-core CPU {m.cpu:.2f} s)")
                    if peer is not None:
                        print(row("checkdmarc", peer))
                    print(f"  load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            finally:
                bind.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
