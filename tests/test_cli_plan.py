"""``mailstack plan`` and ``mailstack adopt`` through the CLI.

``plan`` against a real BIND holding the shipped realistic zone: by TSIG zone transfer
(the RFC 2136 path) and by plain DNS (``--nameserver``), exit 0/1/2, text and JSON,
nothing ever written; ownership through ``--owned``; the gateway key compared by role.
``adopt`` reads a Cloudflare API record list and prints the ``mailstack:dns.adopt``
import ids — which the Pulumi program, under mocks, then sets as ``import`` on exactly
those records.
"""

from __future__ import annotations

import base64
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mailstack import plan as planning
from mailstack.cli import main as cli
from mailstack.config import stackfile
from mailstack.lab import netns, provision, seed
from mailstack.lab.bind import BindServer
from mailstack.rfc2136 import wire
from tests import project
from tests.ports import free_port
from tests.pulumi_harness import public_pem, rsa_key, run_program, stack_config
from tests.servers import require_binary, require_root

KEY = "mailstack-lab"
ZONE_FILE = Path(__file__).parent / "zones" / "acme.test.zone"
OLD_SPF = "v=spf1 include:_spf.google.com ~all"
ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"


class Lab:
    address = ""
    port = 0
    secret = ""
    workdir = Path()


@pytest.fixture(scope="module")
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    require_root()
    require_binary("named")
    tmp = tmp_path_factory.mktemp("plan")
    Lab.workdir = tmp
    Lab.address = random.choice([f"127.0.112.{i}" for i in range(10, 250) if not netns.has_address(f"127.0.112.{i}")])
    Lab.port = free_port(Lab.address)
    Lab.secret = base64.b64encode(os.urandom(32)).decode()
    (tmp / "tsig.secret").write_text(Lab.secret + "\n", encoding="utf-8")
    server = BindServer(tmp / "bind", Lab.address, Lab.port)
    server.add_tsig_key(KEY, "hmac-sha256", Lab.secret)
    for zone, extra in (("acme.test", ""), ("oldspf.test", f'oldspf.test. 1 IN TXT "{OLD_SPF}"\n')):
        path = tmp / f"{zone}.zone"
        path.write_text(ZONE_FILE.read_text(encoding="utf-8").replace("acme.test", zone) + extra, encoding="utf-8")
        server.add_zone_file(zone, seed.load(path).zone_text(), dynamic=True, update_key=KEY)
    with server:
        yield server


def stack(zone: str, **kwargs: str) -> Path:
    return project.lab_variant(Lab.workdir, zone, server=Lab.address, port=Lab.port, **kwargs)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["plan", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def serial(zone: str) -> int:
    return wire.transfer(wire.Server(Lab.address, Lab.port, KEY, "hmac-sha256", Lab.secret), zone).serial


def test_plan_by_zone_transfer_lists_the_change_and_writes_nothing(bind: BindServer, capsys: pytest.CaptureFixture[str]) -> None:
    before = serial("acme.test")
    path = stack("acme.test")
    code, out, _ = run(capsys, "--stack-file", str(path), "--tsig-secret-file", str(Lab.workdir / "tsig.secret"))
    assert code == 1, out
    assert f"plan for stack {path} against {Lab.address}:{Lab.port} (zone transfer):" in out
    assert "  create    acme.test TXT 'v=spf1 ip4:127.0.40.10 -all'\n            TTL 1 of the existing set kept" in out
    assert "  unmanaged acme.test TXT 'google-site-verification=" in out and "  unmanaged acme.test CAA" in out
    assert "5 to create, 0 to update, 0 to delete, 0 to adopt, 0 unchanged, 0 conflicts, 8 unmanaged" in out
    code, out, _ = run(capsys, "--stack-file", str(path), "--tsig-secret-file", str(Lab.workdir / "tsig.secret"), "--format", "json")
    document = json.loads(out)
    assert code == 1 and document["changed"] is True and document["conflicts"] == 0
    assert document["counts"]["create"] == 5 and document["counts"]["unmanaged"] == 8
    [spf] = [c for c in document["changes"] if c["action"] == "create" and c["name"] == "acme.test" and c["type"] == "TXT"]
    assert spf["planned"]["content"] == "v=spf1 ip4:127.0.40.10 -all" and spf["ttl"] == 1
    assert serial("acme.test") == before, "plan never writes"


def test_plan_exits_2_on_a_conflict_naming_the_record_and_both_ways_out(bind: BindServer, capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["MAILSTACK_TSIG_SECRET"] = Lab.secret
    try:
        code, out, _ = run(capsys, "--stack-file", str(stack("oldspf.test")))
    finally:
        del os.environ["MAILSTACK_TSIG_SECRET"]
    assert code == 2
    assert f"  conflict  oldspf.test TXT '{OLD_SPF}'\n            oldspf.test TXT '{OLD_SPF}' is not mailstack's" in out
    assert "mailstack:dns.adopt {txt-oldspf.test:" in out and "or remove it from the zone" in out
    assert out.rstrip().endswith("nothing may be written while a conflict remains: resolve each as its note says, then plan again")
    declared = stack("oldspf.test", dns=f'    adopt:\n      txt-oldspf.test: "{OLD_SPF}"\n')
    code, out, _ = run(capsys, "--stack-file", str(declared), "--nameserver", f"{Lab.address}:{Lab.port}")
    assert code == 1 and f"  update    oldspf.test TXT '{OLD_SPF}' → 'v=spf1 ip4:127.0.40.10 -all'" in out


def test_plan_after_an_apply_is_empty_and_owned_records_are_judged_by_role(bind: BindServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = stack("acme.test")
    pem = public_pem(rsa_key(2048))
    (tmp_path / "key.pem").write_text(pem, encoding="utf-8")
    journal = tmp_path / "records.json"
    provision.apply(provision.desired(planning.build(stackfile.load(path), pem), Lab.address, Lab.port, KEY, Lab.secret), journal)
    secret = ["--tsig-secret-file", str(Lab.workdir / "tsig.secret")]
    code, out, _ = run(capsys, "--stack-file", str(path), *secret, "--dkim-public-key", str(tmp_path / "key.pem"), "--owned", str(journal))
    assert code == 0 and "0 to create, 0 to update, 0 to delete, 0 to adopt, 5 unchanged" in out
    code, out, _ = run(capsys, "--stack-file", str(path), *secret, "--dkim-public-key", str(tmp_path / "key.pem"))
    assert code == 0 and "5 to adopt" in out, "without --owned the same records are taken over, nothing written"
    code, out, _ = run(capsys, "--stack-file", str(path), *secret)  # the key unknown here, and nothing said to be ours
    assert code == 2 and "If it is the gateway's key from an earlier run, pass --dkim-public-key or --owned" in out
    code, out, _ = run(capsys, "--stack-file", str(path), *secret, "--owned", str(journal))
    assert code == 0 and "5 unchanged" in out
    code, out, _ = run(capsys, "--stack-file", str(path), "--nameserver", f"{Lab.address}:{Lab.port}", "--owned", str(journal))
    assert code == 0, out


def test_plan_input_errors_exit_2_with_the_option_named(bind: BindServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = stack("acme.test")
    code, _, err = run(capsys, "--stack-file", str(path))
    assert code == 2 and "needs the TSIG secret" in err and "--tsig-secret-file" in err
    (tmp_path / "bad.json").write_text('{"x": 1}', encoding="utf-8")
    code, _, err = run(capsys, "--stack-file", str(path), "--nameserver", "127.0.112.1:1", "--owned", str(tmp_path / "bad.json"))
    assert code == 2 and f"--owned {tmp_path / 'bad.json'}: not a JSON list of records" in err
    code, _, err = run(capsys, "--stack-file", str(path), "--nameserver", "nonsense")
    assert code == 2 and "--nameserver" in err


# -- Cloudflare: adopt by import id ---------------------------------------------------------


def api_record(record_id: str, name: str, rdtype: str, content: str, priority: int | None = None) -> dict[str, object]:
    """One record as the Cloudflare API lists it (TXT content quoted, as Cloudflare stores it)."""
    item: dict[str, object] = {"id": record_id, "zone_id": ZONE_ID, "zone_name": "example.com", "name": name, "type": rdtype,
                               "content": f'"{content}"' if rdtype == "TXT" else content, "proxied": False, "ttl": 1,
                               "comment": None, "tags": []}
    if priority is not None:
        item["priority"] = priority
    return item


RECORDS = {"result": [
    api_record("a" * 32, "example.com", "TXT", "google-site-verification=abc"),
    api_record("b" * 32, "example.com", "TXT", "v=spf1 include:_spf.google.com ~all"),  # the old SPF
    api_record("c" * 32, "mail.example.com", "MX", "examplecorp.odoo.com", 10),  # already as planned
    api_record("d" * 32, "www.example.com", "CNAME", "example.pages.example"),
], "success": True}


def test_adopt_prints_import_ids_that_the_program_then_uses_for_exactly_those_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "records.json"
    listing.write_text(json.dumps(RECORDS), encoding="utf-8")
    code = cli.main(["adopt", "--stack", "online", "--project-dir", str(project.ROOT), "--cloudflare-records", str(listing)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"  mx-mail.example.com-10-examplecorp.odoo.com: {ZONE_ID}/{'c' * 32}  # exists as planned" in out
    assert f"  txt-example.com: {ZONE_ID}/{'b' * 32}  # replaces 'v=spf1 include:_spf.google.com ~all': imported, then updated" in out
    adopt = yaml.safe_load(out)["adopt"]
    assert set(adopt) == {"mx-mail.example.com-10-examplecorp.odoo.com", "txt-example.com"}

    config, _ = stack_config(project.stack_path("online"))
    dns = {"provider": "cloudflare", "zone": "example.com", "ttl": 3600, "adopt": adopt}
    run_ = run_program(project.stack_path("online"), config={**config, "mailstack:dns": json.dumps(dns)})
    imported = {(r.inputs["name"], r.inputs["type"]): r.import_id for r in run_.of_type("cloudflare:index/dnsRecord:DnsRecord") if r.import_id}
    assert imported == {("mail.example.com", "MX"): f"{ZONE_ID}/{'c' * 32}", ("example.com", "TXT"): f"{ZONE_ID}/{'b' * 32}"}


def test_adopt_refuses_what_no_import_resolves_and_bad_listings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "records.json"
    listing.write_text(json.dumps({"result": [*RECORDS["result"], api_record("e" * 32, "mail.example.com", "CNAME", "old.example.net")]}))  # type: ignore[misc]
    code = cli.main(["adopt", "--stack", "online", "--project-dir", str(project.ROOT), "--cloudflare-records", str(listing), "--format", "json"])
    captured = capsys.readouterr()
    assert code == 2 and "mail.example.com is a CNAME to old.example.net" in captured.err
    assert json.loads(captured.out)["conflicts"]
    listing.write_text(json.dumps({"result": [{"id": "x", "name": "example.com", "type": "TXT", "content": "y"}]}))
    code = cli.main(["adopt", "--stack", "online", "--project-dir", str(project.ROOT), "--cloudflare-records", str(listing)])
    assert code == 2 and "result[0]: id 'x' is not a Cloudflare record id" in capsys.readouterr().err
    code = cli.main(["adopt", "--stack", "lab", "--project-dir", str(project.ROOT), "--cloudflare-records", str(listing)])
    assert code == 2 and "mailstack adopt is for Cloudflare stacks" in capsys.readouterr().err


def test_plan_on_cloudflare_says_a_twin_needs_its_import_id(bind: BindServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    online = planning.build(stackfile.load(project.stack_path("online")))
    server = BindServer(tmp_path / "cf", Lab.address, free_port(Lab.address))
    server.add_zone("example.com", [r for r in online.records if r.type == "MX"])
    with server:
        where = f"{server.address}:{server.port}"
        code, out, _ = run(capsys, "--stack", "online", "--project-dir", str(project.ROOT), "--nameserver", where)
        assert code == 2 and "already exists on Cloudflare, which refuses to create its twin" in out and "mailstack adopt" in out
        config = tmp_path / "Pulumi.online.yaml"
        text = project.stack_path("online").read_text(encoding="utf-8")
        config.write_text(text.replace("    ttl: 3600\n", f"    ttl: 3600\n    adopt:\n      mx-mail.example.com-10-examplecorp.odoo.com: {ZONE_ID}/{'c' * 32}\n"))
        code, out, _ = run(capsys, "--stack-file", str(config), "--nameserver", where)
        assert code == 1 and f"imported by id {ZONE_ID}/{'c' * 32}" in out
