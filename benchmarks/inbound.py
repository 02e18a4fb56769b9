"""Inbound throughput: N messages from outside through the gateway into the Odoo stand-in.

``python benchmarks/inbound.py [--messages 1000] [--concurrency 8] [--delivery pipe lmtp] [--connections 10]``
(as root). For each mailgate concurrency and each delivery (``gateway.mailgate.delivery``:
Postfix's pipe starting a mailgate per message, or LMTP to the resident mailgate,
side by side in one run) it renders a gateway from a stack declaring them — Postfix,
OpenDKIM, mailstack-aliasd and the mailgate, exactly as a gateway host runs them (``mailstack.gateway.render`` + the lab's runners) — in a private
network namespace (``ms14-inbound-*``, loopback only), with the Odoo stand-in behind
it. Then ``--connections`` SMTP clients, each from its own outside address (the stack's
per-client rate limits stay at their defaults, as for mail from many MTAs), send the N
messages (one alias recipient each, every tenth with a second recipient in Bcc) and
the script waits until Odoo stored them all.

It prints, per concurrency:

- SMTP accept rate (messages / the time until the last 250 after DATA) and end to end
  (messages / the time from the first connection until Odoo stored the last one);
- p50/p99/max of Postfix's own ``delay=`` of each delivery (from the message's arrival
  in the queue, during the SMTP session, to the mailgate's exit after Odoo stored it);
- lost and duplicated: every alias of every Message-Id sent must be routed by Odoo
  exactly once, nothing left in the queue, nothing bounced;
- where the CPU went, per component: cgroup v1 ``cpuacct`` of each process tree
  (Postfix with everything it starts, OpenDKIM, mailstack-aliasd, the resident
  mailgate, the Odoo stand-in, the senders), and the pipe's mailgate runs apart from
  Postfix's daemons (a small ``sh``
  wrapper in front of master.cf's argv records each run's CPU); measured apart, one
  mailgate run's CPU and wall time against the interpreter's bare start-up and the
  standard library it imports — the part of each message that is a fresh process —
  and the mailgate of before.

It asserts nothing (the tests prove delivery: ``tests/test_inbound_delivery.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mailstack.lab.odoo import OdooStandIn  # noqa: E402
from mailstack.lab.postfix import lab_layout, mailgate_python, make_workdir  # noqa: E402
from mailstack.gateway import mailgate  # noqa: E402
from tests.inbound_gateway import ALIASES, GATEWAY, PASSWORD, inbound_gateway, message, recipients_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CGROUP_ROOT = Path("/sys/fs/cgroup/cpuacct")
COMPONENTS = ("postfix", "opendkim", "aliasd", "mailgated", "odoo", "senders")
#: The mailgate as it was before issue 14 changed its start-up (for the side by side).
BEFORE = "c3c87b4cffd814595adb4658b8354d04c9e88aec"


class MailgateTimes:
    """The CPU time of every mailgate run inside the pipeline: master.cf's argv starts
    with a small ``sh`` script that runs the mailgate, appends its ``times`` (the CPU of
    its children) to a file of its own PID and exits with the mailgate's status — one
    file per PID, so two runs never interleave their lines. (A mailgate cannot join a
    cgroup itself: ``ip netns exec`` mounts a sysfs of its own over /sys.)"""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="ms14-times-", dir="/run"))
        script = self.directory / "timed"
        script.write_text(f'#!/bin/sh\n"$@"\nstatus=$?\ntimes >> {self.directory}/times.$$\nexit $status\n')
        script.chmod(0o755)
        self.directory.chmod(0o1777)  # written by the mailgate user
        self.wrapper = (str(script),)

    def seconds(self) -> tuple[int, float]:
        """(mailgate runs, their CPU seconds): ``times`` prints the shell's own user and
        system time, then its children's, as ``0m0.040000s 0m0.008000s``."""
        runs, total = 0, 0.0
        for path in self.directory.glob("times.*"):
            for line in path.read_text().splitlines()[1::2]:
                runs += 1
                for field in line.split():
                    minutes, _, seconds = field.rstrip("s").partition("m")
                    total += 60 * float(minutes) + float(seconds)
        return runs, total

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class Cgroups:
    """One cpuacct group per component; a process started while this one sits in a
    group stays there with everything it forks (the mailgates under Postfix's pipe)."""

    def __init__(self, tag: str) -> None:
        self.base = CGROUP_ROOT / tag
        self.available = os.access(CGROUP_ROOT, os.W_OK)
        if self.available:
            for name in COMPONENTS:
                (self.base / name).mkdir(parents=True, exist_ok=True)

    @contextmanager
    def inside(self, name: str) -> Iterator[None]:
        if not self.available:
            yield
            return
        (self.base / name / "cgroup.procs").write_text(str(os.getpid()))
        try:
            yield
        finally:
            (CGROUP_ROOT / "cgroup.procs").write_text(str(os.getpid()))

    def usage(self) -> dict[str, float]:
        """CPU seconds so far per component (nothing when cgroups are not writable)."""
        if not self.available:
            return {}
        return {name: int((self.base / name / "cpuacct.usage").read_text()) / 1e9 for name in COMPONENTS}

    def remove(self) -> None:
        if not self.available:
            return
        for name in COMPONENTS:
            group = self.base / name
            deadline = time.monotonic() + 10
            while group.exists() and time.monotonic() < deadline:
                try:
                    group.rmdir()
                except OSError:  # a process still exiting
                    time.sleep(0.1)
        self.base.rmdir()


DELIVERED = re.compile(r"/(?:pipe|lmtp)\[\d+\]: (?P<queue>\w+): to=<[^>]+>,(?: orig_to=<[^>]*>,)? relay=[^,]+, delay=(?P<delay>[\d.]+),.* status=(?P<status>\w+)")


def delays(log: str) -> tuple[list[float], Counter[str]]:
    """Postfix's delay= per delivered message (one pipe run or LMTP transaction per
    message), and the statuses of every mailgate delivery line."""
    per_queue: dict[str, float] = {}
    statuses: Counter[str] = Counter()
    for match in DELIVERED.finditer(log):
        statuses[match["status"]] += 1
        if match["status"] == "sent":
            per_queue[match["queue"]] = float(match["delay"])
    return sorted(per_queue.values()), statuses


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def run(args: argparse.Namespace, concurrency: int, delivery: str, alone: dict[str, float]) -> None:
    groups = Cgroups(f"ms14-inbound-{os.getpid()}-{concurrency}-{delivery}")
    times = MailgateTimes()
    try:
        with inbound_gateway("ms14-inbound", concurrency, groups.inside, times.wrapper, delivery=delivery) as gw:
            before = groups.usage()
            with groups.inside("senders"):
                sent = gw.send(args.messages, args.connections)
            expected = set(sent["accepted"])
            deadline = time.monotonic() + 600
            seen: dict[str, float] = {}
            flushes, last_flush = 0, time.monotonic()
            while time.monotonic() < deadline:
                now = time.time()
                for message_id in gw.stored_ids():
                    seen.setdefault(message_id, now)
                if expected <= set(seen):
                    break
                if time.monotonic() - last_flush > 2 and "status=deferred" in gw.postfix.log():
                    # A deferred delivery would wait out Postfix's backoff (300 s): retry now.
                    gw.postfix.flush()
                    flushes, last_flush = flushes + 1, time.monotonic()
                time.sleep(0.2)
            done = time.time()
            latencies = sorted(seen[m] - sent["accepted"][m] for m in expected if m in seen)
            after = groups.usage()
            time.sleep(1)  # Postfix writes its last log lines
            queue = gw.postfix.queue()
            log = gw.postfix.log()
            routed = gw.routed()
        values, statuses = delays(log)
        lost = len(expected - set(routed))
        duplicated = sum(1 for routes in routed.values() if max(routes.values(), default=0) > 1)
        n = len(expected)
        accept_span = max(sent["accepted"].values(), default=sent["started"]) - sent["started"]
        total_span = done - sent["started"]
        print(f"== delivery {delivery}, mailgate concurrency {concurrency}: {args.messages} messages over {args.connections} connections")
        print(f"  SMTP accept  {n / accept_span:6.1f} msg/s  ({n} accepted in {accept_span:.2f} s, {len(sent['failures'])} refused)")
        print(f"  end to end   {n / total_span:6.1f} msg/s  (the last stored in Odoo {total_span:.2f} s after the first connection)")
        print(f"  SMTP accept to stored in Odoo (polled every 0.2 s): p50 {percentile(latencies, 50):.2f} s  "
              f"p99 {percentile(latencies, 99):.2f} s  max {max(latencies, default=float('nan')):.2f} s")
        print(f"  Postfix delay= of the {len(values)} logged deliveries: p50 {percentile(values, 50):.2f} s  "
              f"p99 {percentile(values, 99):.2f} s  max {max(values, default=float('nan')):.2f} s")
        print(f"  lost {lost}, duplicated {duplicated}, left in the queue {len(queue)}, "
              f"mailgate delivery lines {dict(statuses)}, bounced {log.count('status=bounced')}, queue flushes {flushes}")
        if after:
            used = {k: after[k] - before.get(k, 0.0) for k in after}
            print("  CPU: " + ", ".join(f"{k} {v:.2f} s ({1000 * v / n:.1f} ms/msg)" for k, v in used.items())
                  + f"; total {sum(used.values()):.2f} s in {total_span:.2f} s on {os.cpu_count()} cores")
            per_message = {k: 1000 * v / n for k, v in used.items()}
            gateway_ms = per_message["postfix"] + per_message["opendkim"] + per_message["aliasd"] + per_message["mailgated"]
            if delivery == "pipe":
                runs, mailgate_seconds = times.seconds()
                share = alone["stdlib"] / alone["mailgate"]
                mailgate = (f"the mailgate processes {1000 * mailgate_seconds / n:.1f} ms ({runs} runs; measured apart, "
                            f"{100 * share:.0f} % of a run is the interpreter and the standard library it imports)")
                daemons = per_message["postfix"] - 1000 * mailgate_seconds / n
            else:
                mailgate = f"the resident mailgate {per_message['mailgated']:.1f} ms"
                daemons = per_message["postfix"]
            print(f"  where a message's gateway CPU goes ({gateway_ms:.1f} ms): {mailgate}, "
                  f"Postfix's daemons {daemons:.1f} ms, "
                  f"OpenDKIM {per_message['opendkim']:.1f} ms, mailstack-aliasd {per_message['aliasd']:.1f} ms; "
                  f"besides, the Odoo stand-in {per_message['odoo']:.1f} ms "
                  f"and the senders {per_message['senders']:.1f} ms")
            whole = sum(per_message.values())
            print(f"  ceiling of this machine for that work: {os.cpu_count()} cores x 1000 / {whole:.1f} ms = "
                  f"{(os.cpu_count() or 1) * 1000 / whole:.0f} msg/s (if nothing else ran)")
        for failure in sent["failures"][:5]:
            print(f"  refused: {failure}")
    finally:
        groups.remove()
        times.remove()


def mailgate_alone(runs: int) -> dict[str, float]:
    """One mailgate run (one message into the stand-in) as master.cf starts it, beside
    the bare interpreter, the standard library it needs, and the mailgate of before
    issue 14 (main's first version of it, run as it was: no flags). Returns the CPU
    milliseconds of the interpreter, the standard library and the mailgate."""
    cpu_ms: dict[str, float] = {}
    workdir = make_workdir("ms14-mailgate-")
    try:
        with OdooStandIn(workdir / "odoo", "127.0.114.41", 0, password=PASSWORD, aliases=["sales@example.net"]) as standin:
            password_file = workdir / "password"
            password_file.touch(mode=0o600)
            password_file.write_text(PASSWORD)
            python = mailgate_python()
            flags = list(lab_layout(workdir, GATEWAY).mailgate_command[1:-1])
            arguments = ["--url", standin.url, "--database", "odoo", "--uid", "2",
                         "--password-file", str(password_file), "--recipient", "sales@example.net"]
            before = workdir / "mailgate-before.py"
            before.write_bytes(subprocess.run(["git", "show", f"{BEFORE}:modules/gateway/mailgate.py"], cwd=ROOT,
                                              check=True, capture_output=True).stdout)
            script = ROOT / "modules" / "gateway" / "mailgate.py"
            shown = " ".join(flags)
            for number, (key, label, argv, data) in enumerate((
                ("interpreter", f"python3 {shown} -c pass", [python, *flags, "-c", "pass"], b""),
                ("stdlib", f"python3 {shown} -c 'import xmlrpc.client, argparse, configparser'",
                 [python, *flags, "-c", "import xmlrpc.client, argparse, configparser"], b""),
                ("before", "mailgate before issue 14 (python3 mailgate.py)", [python, str(before), *arguments], None),
                ("mailgate", f"mailgate now (python3 {shown} mailgate.py)", [python, *flags, str(script), *arguments], None),
            )):
                walls = []
                cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                for index in range(runs):
                    body = message(10_000 * (number + 1) + index) if data is None else data  # a new Message-Id each
                    start = time.perf_counter()
                    subprocess.run(argv, input=body, check=True)
                    walls.append(time.perf_counter() - start)
                cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime) / runs
                cpu_ms[key] = 1000 * cpu
                print(f"  {label:66} wall median {1000 * statistics.median(walls):5.1f} ms  cpu {1000 * cpu:5.1f} ms")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return cpu_ms


def standin_alone(messages: int, concurrency: int) -> None:
    """The Odoo stand-in without the gateway: ``messages`` messages posted to its
    ``message_process`` from ``concurrency`` threads with the mailgate's own code (one
    kept session each, as the resident mailgate does), in this process. Its rate is the
    most any gateway could deliver into it on this machine now."""
    workdir = make_workdir("ms14-standin-")
    try:
        with OdooStandIn(workdir / "odoo", "127.0.114.42", 0, password=PASSWORD,
                         aliases=[f"{a}@example.net" for a in ALIASES]) as standin:
            password_file = workdir / "password"
            password_file.touch(mode=0o600)
            password_file.write_text(PASSWORD)
            config = mailgate.Config(standin.url, "odoo", PASSWORD, 2, None, 60.0)
            indexes = iter(range(messages))
            lock = threading.Lock()

            def worker() -> None:
                session = mailgate.Session(config)
                while True:
                    with lock:
                        index = next(indexes, None)
                    if index is None:
                        return
                    raw = mailgate.with_delivered_to(b"Return-Path: <c@outside.test>\n" + message(50_000 + index).replace(b"\r\n", b"\n"),
                                                     recipients_of(index))
                    mailgate.deliver(raw, config, session)

            cpu_before = _standin_cpu(standin)
            start = time.perf_counter()
            threads = [threading.Thread(target=worker) for _ in range(concurrency)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - start
            cpu = _standin_cpu(standin) - cpu_before
        print(f"  the stand-in alone: {messages} messages from {concurrency} threads in {wall:.2f} s = {messages / wall:.1f} msg/s, "
              f"its CPU {1000 * cpu / messages:.1f} ms/msg (one process: at most one core for its Python)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _standin_cpu(standin: OdooStandIn) -> float:
    """The stand-in process's user + system CPU seconds (/proc/PID/stat)."""
    fields = Path(f"/proc/{standin.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8])
    parser.add_argument("--delivery", nargs="+", choices=("pipe", "lmtp"), default=["pipe", "lmtp"],
                        help="gateway.mailgate.delivery values to run, one after the other for each concurrency")
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start")
    print("== one mailgate process, measured apart (20 runs, the stand-in on loopback)")
    alone = mailgate_alone(20)
    print("== the Odoo stand-in alone (no gateway), at each concurrency")
    for concurrency in args.concurrency:
        standin_alone(min(args.messages, 500), concurrency)
    for concurrency in args.concurrency:
        for delivery in args.delivery:
            run(args, concurrency, delivery, alone)
            print(f"  load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
