"""Benchmarks: how fast mailstack starts, plans, renders and checks, and its memory.

Prints its figures; asserts nothing (speed is measured here, never in tests). Run:
``python benchmarks/bench.py`` (the DNS part needs root and ``named``; it serves the
example stacks from a private BIND on 127.0.60.2:5391 and skips SMTP, whose example
addresses are documentation addresses, not loopback servers). The fleet comparison
with checkdmarc behind a delay proxy is ``benchmarks/fleet.py``.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from mailstack import plan as planning
from mailstack.config import project, stackfile
from mailstack.config.stack import from_config
from mailstack.core.model import MailDomain
from mailstack.core.record import Record

ROOT = Path(__file__).resolve().parent.parent
PROJECT = project.at(ROOT)


def plan(stack: MailDomain) -> tuple[Record, ...]:
    return planning.build(stack).records

DNS_GROUPS = ("spf", "dkim", "dmarc", "mx", "tls-rpt", "published", "odoo")
ADDRESS, PORT = "127.0.60.2", 5391


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, max) seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), max(samples)


def big_stack(alias_domains: int) -> dict[str, object]:
    """A multi-company declaration with many alias domains (each gets a full record set)."""
    return {
        "domain": "group.example",
        "aliasDomains": [f"brand{i}.example" for i in range(alias_domains)],
        "odoo": {"hosting": "online", "database": "group"},
        "outbound": ["odoo", {"spf": "ip4:203.0.113.25"}],
        "inbound": {"mode": "odoo-mx", "subdomain": "mail"},
        "dmarc": {"policy": "quarantine", "rua": ["mailto:dmarc@group.example"]},
    }


def bench_plan() -> None:
    print("== load + plan (pure, no I/O)")
    for path in PROJECT.stacks():
        median, worst = timed(lambda: plan(stackfile.load(path)), 50)
        count = len(plan(stackfile.load(path)))
        print(f"{path.name:32} {count:4} records  median {median * 1000:6.2f} ms  max {worst * 1000:6.2f} ms")
    print("config + plan + conflict check of a multi-company stack (median of 5, in process):")
    for size in (10, 100, 500, 1000):
        raw = big_stack(size - 1)  # the main domain and size-1 alias domains
        median, worst = timed(lambda: plan(from_config(raw)), 5)
        tracemalloc.start()
        records = plan(from_config(raw))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{size:5} domains: {len(records):5} records  median {median * 1000:7.1f} ms  max {worst * 1000:7.1f} ms,"
              f" {median / size * 1e6:5.0f} us per domain, peak {peak / 1e6:5.2f} MB traced")


def _stack_file(directory: Path, size: int) -> Path:
    import yaml

    path = directory / f"Pulumi.big{size}.yaml"
    document = {"config": {f"mailstack:{key}": value for key, value in big_stack(size - 1).items()}}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def bench_cli() -> None:
    """Start-up against the floor every Python tool of this kind pays: the interpreter
    importing dnspython's resolver, PyYAML and Jinja. Interleaved runs, medians."""
    print("== CLI start-up (a fresh interpreter each time; median of 15 interleaved runs)")
    mailstack = str(Path(sys.executable).with_name("mailstack"))
    with tempfile.TemporaryDirectory() as work:
        big = _stack_file(Path(work), 1000)
        commands = {
            "python3 -c 'import dns.resolver, yaml, jinja2'": [sys.executable, "-c", "import dns.resolver, yaml, jinja2"],
            "mailstack --help": [mailstack, "--help"],
            "mailstack records --stack onpremise": [mailstack, "records", "--stack", "onpremise"],
            "mailstack records (1,000 domains)": [mailstack, "records", "--stack-file", str(big)],
            "mailstack check --help": [mailstack, "check", "--help"],
        }
        samples: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(15):
            for label, command in commands.items():
                start = time.perf_counter()
                subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
                samples[label].append(time.perf_counter() - start)
    floor = statistics.median(samples[next(iter(commands))])
    for label, values in samples.items():
        median = statistics.median(values)
        print(f"{label:48} median {median:5.2f} s  max {max(values):5.2f} s  {median / floor:4.2f}x the floor")


def bench_pulumi() -> None:
    """The Pulumi program (``__main__.py``) under Pulumi's mocks, as the tests run it."""
    print("== the Pulumi program under mocks (tests/pulumi_harness.py), whole run in process")
    sys.path.insert(0, str(ROOT))
    from tests import pulumi_harness

    with tempfile.TemporaryDirectory() as work:
        for size in (10, 100):
            path = _stack_file(Path(work), size)
            start = time.perf_counter()
            program = pulumi_harness.run_program(path)
            elapsed = time.perf_counter() - start
            print(f"{size:4} domains: {len(program.resources):4} resources registered in {elapsed:5.2f} s"
                  + (" (includes importing pulumi and pulumi_cloudflare)" if size == 10 else ""))


def bench_render() -> None:
    print("== render the gateway (Jinja, deterministic)")
    from mailstack.gateway import render

    stack = stackfile.load(PROJECT.stack_path("onpremise"))
    median, worst = timed(lambda: render.render(planning.build(stack)), 20)
    print(f"onpremise, {len(stack.gateways)} gateways: median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms")


def bench_checks() -> None:
    print("== check suite against a private BIND (DNS groups)")
    if os.geteuid() != 0 or not shutil.which("named") and not Path("/usr/sbin/named").exists():
        print("skipped: needs root and named")
        return
    from mailstack.lab.bind import BindServer

    with tempfile.TemporaryDirectory() as work:
        bind = BindServer(Path(work) / "bind", ADDRESS, PORT)
        stacks = [p for p in PROJECT.stacks() if "lab" not in p.name]
        for path in stacks:
            stack = stackfile.load(path)
            records = plan(stack)
            for zone in planning.build(stack).managed_zones:
                if zone not in bind.zones:
                    bind.add_zone(zone, [r for r in records if r.name == zone or r.name.endswith("." + zone)])
        with bind:
            for path in stacks:
                stack_name = path.name[len("Pulumi."):-len(".yaml")]
                command = [sys.executable, "-m", "mailstack.cli", "check", "--stack", stack_name,
                           "--nameserver", f"{ADDRESS}:{PORT}", "--format", "json"]
                for group in DNS_GROUPS:
                    command += ["--only", group]
                samples = []
                for _ in range(3):
                    start = time.perf_counter()
                    subprocess.run(command, cwd=ROOT, capture_output=True)
                    samples.append(time.perf_counter() - start)
                print(f"check --stack {stack_name:16} median {statistics.median(samples):.2f} s (whole process)")


def hostile_cases() -> dict[str, str]:
    """Issue 10's cases: each stack file text mailstack must refuse (exit 2) quickly."""
    import yaml

    base = yaml.safe_load(PROJECT.stack_path("onpremise").read_text(encoding="utf-8"))

    def with_value(key: str, value: object) -> str:
        document = yaml.safe_load(yaml.safe_dump(base))
        top, *rest = key.split(".")
        node = document["config"].setdefault(top, {})
        if not rest:
            document["config"][top] = value
        else:
            for part in rest[:-1]:
                node = node.setdefault(part, {})
            node[rest[-1]] = value
        document["config"].pop("mailstack:mtaSts", None)
        return yaml.safe_dump(document, default_flow_style=None, width=1 << 30)

    bomb = ["config:", "  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    bomb += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return {
        "newline in gateway.tls.cert": with_value("mailstack:gateway.tls.cert", "/etc/x\nsmtpd_relay_restrictions = permit"),
        "shell in mailgate.passwordFile": with_value("mailstack:gateway.mailgate.passwordFile", "/etc/x; touch /root/owned; echo "),
        "newline in dmarc.rua": with_value("mailstack:dmarc.rua", ["mailto:a@example.net\nx"]),
        "nesting 600 deep (flow)": "config:\n  mailstack:dmarc: " + "[" * 600 + "]" * 600 + "\n",
        "nesting 100,000 deep (flow)": "config:\n  mailstack:dmarc: " + "[" * 100000 + "]" * 100000 + "\n",
        "alias bomb (9^10 nodes)": "\n".join([*bomb, "  mailstack:inbound: *a9"]) + "\n",
        "20,000-element list": with_value("mailstack:inbound", {"mode": "forward", "mx": [1] * 20000}),
        "namespace typo mailstak:dmarc": with_value("mailstak:dmarc", {"policy": "reject"}),
        "duplicate mailstack:dmarc": with_value("mailstack:domain", "example.net") + "  mailstack:dmarc: {policy: none}\n",
        "209 KB report URI": with_value("mailstack:dmarc.rua", ["mailto:" + "r" * 209000 + "@example.net"]),
        "3,000 MX hosts": with_value("mailstack:inbound", {"mode": "forward", "mx": [{"host": f"mx{i}.example.org"} for i in range(3000)]}),
        "credentials in odoo.url": with_value("mailstack:odoo.url", "https://admin:pw@odoo.example.net"),
        "plain-text odooPassword": with_value("mailstack:odooPassword", "hunter2"),
        "2,000 unknown keys": with_value("mailstack:dmarc", {f"tag{i}": "x" * 50 for i in range(2000)}),
    }


def bench_hostile() -> None:
    print("== hostile stack files (issue 10): refused with exit 2; in process median of 5, traced peak; then a fresh process")
    import contextlib
    import io

    from mailstack.cli import main as cli

    with tempfile.TemporaryDirectory() as work:
        for name, text in hostile_cases().items():
            path = Path(work) / "Pulumi.hostile.yaml"
            path.write_text(text, encoding="utf-8")
            argv = ["records", "--stack-file", str(path)]
            codes: list[int] = []

            def refuse() -> None:
                with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                    codes.append(cli.main(argv))

            median, worst = timed(refuse, 5)
            tracemalloc.start()
            refuse()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            start = time.perf_counter()
            process = subprocess.run([sys.executable, "-m", "mailstack.cli", *argv], capture_output=True, text=True)
            cold = time.perf_counter() - start
            print(f"{name:32} {len(text) / 1024:7.1f} KB  exit {set(codes)} / {process.returncode}  "
                  f"median {median * 1000:7.1f} ms  max {worst * 1000:7.1f} ms  peak {peak / 1e6:6.2f} MB  process {cold:.2f} s")


def main() -> None:
    bench_plan()
    bench_cli()
    bench_render()
    bench_pulumi()
    bench_hostile()
    bench_checks()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"== peak RSS of this benchmark process: {rss:.0f} MB")


if __name__ == "__main__":
    main()
