"""The gateway deploy on real Debian 12 hosts: the component's own commands, over SSH.

Every gateway of ``stacks/Pulumi.onpremise.yaml`` (mx1 and mx2) is a Debian 12 booted
under systemd-nspawn (``tests.debian_host``) on the lab network of ``tests.deploy_site``.
The Pulumi program runs under mocks; what the gateway component registers is executed
by ``tests.command_replay`` the way the engine and pulumi-command would. The tests run
in order on one site, as one administrator's day: a deploy that fails at its first
step, a first deploy, mail both ways, an unchanged re-deploy, a broken config stopped
by ``postfix check``, a changed stack, the mirror gone, ``pulumi destroy``.

Costs (measured, 2 cores): the cached root once per machine (~30-60 s), then about
70-85 s for the whole module (84 s with nginx-light, 2026-12-02), most of it apt installing Postfix, OpenDKIM and nginx and
OpenDKIM's slow restart (~4.5 s per activation).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from mailstack.gateway import render
from mailstack.gateway.layout import Layout
from mailstack.lab import smtp_tools
from mailstack.rules import mta_sts
from tests.command_replay import COPY, DeployError, leaked
from tests.deploy_site import OUTSIDE, RECEIVER_DOMAIN, Deploy, Site, example_values
from tests.servers import require_binary, require_root

MIRROR_HOSTS = ("deb.debian.org:80",)
CERT, KEY = "/etc/ssl/mailstack/fullchain.pem", "/etc/ssl/mailstack/privkey.pem"
HOSTS = ("mx1.example.net", "mx2.example.net")
ALIASES = ("sales", "support", "jobs", "catchall", "bounce")
NEW_DOMAIN, NEW_SELECTOR = "example.org", "odoo2027"
#: The MTA-STS policy hosts the gateways serve (their certificate names them too).
POLICY_HOSTS = ("mta-sts.example.net", f"mta-sts.{NEW_DOMAIN}")
#: Run by the host's own python3: GET the policy over HTTPS from the host's nginx, with
#: SNI and the certificate verified for the policy host (argv: CA file, host, path).
FETCH = (
    "import http.client, socket, ssl, sys\n"
    "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
    "c = http.client.HTTPSConnection(sys.argv[2], 443, context=ctx, timeout=10)\n"
    "c.sock = ctx.wrap_socket(socket.create_connection(('127.0.0.1', 443), 10), server_hostname=sys.argv[2])\n"
    "c.request('GET', sys.argv[3], headers={'Host': sys.argv[2]})\n"
    "r = c.getresponse()\n"
    "sys.stdout.write(f'{r.status} {r.getheader(\"Content-Type\")}\\n' + r.read().decode())\n"
)
#: What a deploy leaves on a host, without mtimes: compared before and after a re-run.
SNAPSHOT = (
    "cd / && find etc/postfix etc/opendkim etc/mailstack usr/local/lib/mailstack etc/systemd/system/opendkim.service.d "
    "var/www/mta-sts -printf '%p %m %u:%g\\n' | sort && find etc/postfix etc/opendkim etc/mailstack usr/local/lib/mailstack "
    "etc/systemd/system/opendkim.service.d var/www/mta-sts -type f ! -name '*.db' -exec sha256sum {} + | sort && "
    "systemctl is-active opendkim postfix postfix@- mailstack-mailgate && systemctl is-enabled opendkim postfix mailstack-mailgate && "
    "id mailgate && "
    "dpkg-query -W -f '${Package} ${Status}\\n' postfix opendkim opendkim-tools python3 ssl-cert"
)


class Day:
    """The site and what the tests did to it so far."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.base = site.values(example_values())
        self.current: Deploy | None = None

    def capture(self, values: dict[str, Any] | None = None) -> Deploy:
        return self.site.capture(values if values is not None else self.base)

    def host_names(self, deploy: Deploy, hostname: str) -> set[str]:
        return set(deploy.of_host(hostname))


@pytest.fixture(scope="module")
def day() -> Iterator[Day]:
    require_root()
    for program in ("debootstrap", "systemd-nspawn", "ip", "named", "postfix", "opendkim", "opendmarc", "policyd-spf"):
        require_binary(program)
    site = Site()
    try:
        site.up(HOSTS, tuple(f"{a}@{d}" for d in ("example.net", NEW_DOMAIN) for a in ALIASES))
        day = Day(site)
        first = day.capture()
        site.start_servers(first.records(), ("example.net",))
        yield day
    finally:
        site.down()
    assert not [h for h in site.hosts.values() if h.nspawn is not None]


def test_a_failing_first_step_stops_the_deploy_with_its_name_and_stderr(day: Day) -> None:
    """mx2's mirror cannot be reached (its apt proxy is not running yet): the packages
    step fails with apt's complaint, nothing after it runs, no secret is shown."""
    deploy = day.capture()
    deployer = day.site.deployer
    assert deployer is not None
    with pytest.raises(DeployError) as failed:
        deployer.up(deploy.resources, targets=day.host_names(deploy, "mx2.example.net"))
    assert list(failed.value.failures) == ["gateway-mx2.example.net-packages"]
    message = failed.value.failures["gateway-mx2.example.net-packages"]
    assert "Process exited with status 100" in message and "127.0.0.1:3142" in message, message
    assert [e.name for e in deployer.executed] == ["gateway-mx2.example.net-packages"]
    assert not leaked(deploy.secrets, [message])
    assert not deployer.state


def test_first_deploy_installs_and_starts_everything(day: Day) -> None:
    """Both hosts deployed. Without the certificate ``gateway.tls`` names, activation
    refuses and names the key (Postfix would start and fail every STARTTLS); once the
    administrator put it there, the next up runs only the activations."""
    site, deployer = day.site, day.site.deployer
    assert deployer is not None
    for host in site.hosts.values():
        host.start_proxy(MIRROR_HOSTS)
    deploy = day.capture()
    activations = {f"gateway-{hostname}-activate" for hostname in HOSTS}
    first = len(deployer.executed)
    with pytest.raises(DeployError) as failed:
        deployer.up(deploy.resources)
    assert failed.value.failures and set(failed.value.failures) <= activations
    for message in failed.value.failures.values():
        assert f"{CERT} (mailstack:gateway.tls.cert) is missing on this host" in message, message
    done = {e.name for e in deployer.executed[first:] if e.exit_status == 0}
    for hostname in HOSTS:
        site.install_certificate(hostname, CERT, KEY, POLICY_HOSTS)
    ran = deployer.up(deploy.resources)
    # After the first failure no new step started (as the engine does): the next up
    # runs what had not succeeded, each once, and nothing that had.
    assert activations <= {e.name for e in ran} and not done & {e.name for e in ran}
    assert done | {e.name for e in ran} == set(deploy.resources)
    day.current = deploy

    everything = deployer.executed
    expected_failures = {"gateway-mx2.example.net-packages", *failed.value.failures}
    assert {e.name for e in everything if e.exit_status} <= expected_failures
    assert not [e.name for e in everything if e.created_dirs], "the component makes every parent directory itself"
    assert not leaked(deploy.secrets, [t for e in everything for t in (e.command, e.stdout, e.stderr)])
    for hostname in HOSTS:
        units = "opendkim postfix postfix@- mailstack-aliasd mailstack-mailgate"
        assert site.checked(hostname, f"systemctl is-active {units}").split() == ["active"] * 5
        assert site.checked(hostname, "systemctl is-enabled opendkim postfix mailstack-aliasd mailstack-mailgate").split() == ["enabled"] * 4
        # The resident mailgate runs as the mailgate user; its argv holds no secret.
        assert site.checked(hostname, "ps -o user=,args= -C python3 | grep mailgated.py").split() == [
            "mailgate", "/usr/bin/python3", "-I", "-S", "/usr/local/lib/mailstack/mailgated.py", "--config", "/etc/mailstack/mailgate.conf"]
        assert site.checked(hostname, "systemctl --failed --no-legend --plain") == ""
        status, out, err = site.ssh(hostname, "script -qefc 'postfix -c /etc/postfix check' /dev/null")
        assert (status, out.strip()) == (0, ""), err
        modes = site.checked(hostname, "stat -c '%n %a %U:%G' /etc/opendkim/keys /etc/opendkim/keys/odoo2026.private "
                                       "/etc/mailstack/odoo-password /etc/postfix/main.cf /usr/local/lib/mailstack/mailgate.py "
                                       "/usr/local/lib/mailstack/mailgated.py")
        assert modes.splitlines() == [
            "/etc/opendkim/keys 750 opendkim:opendkim", "/etc/opendkim/keys/odoo2026.private 600 opendkim:opendkim",
            "/etc/mailstack/odoo-password 640 root:mailgate", "/etc/postfix/main.cf 644 root:root",
            "/usr/local/lib/mailstack/mailgate.py 755 root:root", "/usr/local/lib/mailstack/mailgated.py 755 root:root",
        ]
        assert "-x /etc/opendkim/opendkim.conf" in site.checked(hostname, "ps -o args= -C opendkim")


def test_mail_flows_both_ways_through_each_deployed_host(day: Day) -> None:
    """Outbound as Odoo submits it: DKIM-signed by the host, SPF, DKIM and DMARC pass at
    the independent receiver. Inbound to an alias: over LMTP through the deployed resident
    mailgate into Odoo."""
    assert day.current is not None
    for hostname in HOSTS:
        verdict = day.site.submit_as_odoo(day.current, hostname, f"from Odoo via {hostname}")
        assert (verdict.spf, verdict.spf_domain, verdict.dmarc, verdict.dmarc_from) == ("pass", "example.net", "pass", "example.net")
        assert ("pass", "example.net", "odoo2026") in verdict.dkim
        stored = day.site.send_inbound(hostname, "sales@example.net", f"to sales via {hostname}")
        assert stored["routes"] == "sales@example.net"
        assert b"Delivered-To: sales@example.net" in stored["raw"]
        # mailstack-aliasd, run by systemd as the mailgate user, asked Odoo: what Odoo 17
        # would not route is refused at RCPT.
        refused = smtp_tools.send(day.site.hosts[hostname].address, 25, f"alice@{RECEIVER_DOMAIN}", ["sales+quote@example.net"],
                                  b"Subject: x\r\n\r\nx\r\n", netns=day.site.lab, helo=f"sender.{RECEIVER_DOMAIN}", source=OUTSIDE)
        assert refused["rcpt"]["sales+quote@example.net"][0] == 550 and refused["data"] is None


def served_policies(day: Day, deploy: Deploy, hostname: str) -> dict[str, str]:
    """Each planned ``_mta-sts`` domain's policy as the host's nginx serves it, checked
    to be text/plain and to hash to the planned id; other paths are 404."""
    found = {}
    for record in (r for r in deploy.records() if r.name.startswith("_mta-sts.")):
        domain = record.name.removeprefix("_mta-sts.")
        status, body = day.site.checked(hostname, f"python3 -I - {CERT} mta-sts.{domain} /.well-known/mta-sts.txt", FETCH).split("\n", 1)
        assert status == "200 text/plain", (hostname, domain, status, body)
        assert record.content == mta_sts.txt_value(body), (hostname, domain, body)
        found[domain] = body
        assert day.site.checked(hostname, f"python3 -I - {CERT} mta-sts.{domain} /", FETCH).startswith("404 ")
    return found


def test_each_host_serves_the_mta_sts_policy_with_nginx(day: Day) -> None:
    """mtaSts.serve: gateway (the default): nginx-light installed, the rendered site in
    conf.d, the policy at https://mta-sts.example.net/.well-known/mta-sts.txt with the
    gateway's certificate, the exact text whose hash is the published id."""
    assert day.current is not None
    for hostname in HOSTS:
        assert set(served_policies(day, day.current, hostname)) == {"example.net"}
        assert day.site.checked(hostname, "systemctl is-active nginx; systemctl is-enabled nginx").split() == ["active", "enabled"]
        modes = day.site.checked(hostname, "stat -c '%n %a %U:%G' /etc/nginx/conf.d/mailstack-mta-sts.conf "
                                           "/var/www/mta-sts/example.net/.well-known/mta-sts.txt")
        assert modes.splitlines() == ["/etc/nginx/conf.d/mailstack-mta-sts.conf 644 root:root",
                                      "/var/www/mta-sts/example.net/.well-known/mta-sts.txt 644 root:root"]


def test_an_unchanged_stack_changes_nothing_and_a_rerun_is_idempotent(day: Day) -> None:
    deployer = day.site.deployer
    assert deployer is not None and day.current is not None
    assert deployer.up(day.capture().resources) == []
    before = day.site.checked("mx1.example.net", SNAPSHOT)
    # A dead Postfix instance (the umbrella postfix.service stays "active"): a reload of
    # postfix alone would leave it failed; activation names postfix@- too.
    killed = day.site.checked("mx1.example.net", "kill -KILL $(ps -o pid= -C master); for i in $(seq 100); do "
                                                 "systemctl is-failed -q postfix@- && break; sleep 0.1; done; systemctl is-failed postfix@-")
    assert killed == "failed\n"
    mx1 = day.host_names(day.current, "mx1.example.net")
    ran = deployer.up(day.current.resources, replace=mx1)  # pulumi up --replace: every command again
    assert {e.name for e in ran} == mx1
    assert day.site.checked("mx1.example.net", SNAPSHOT) == before  # the key too: secrets are deleted before re-written


def test_a_config_failing_postfix_check_stops_before_the_reload(day: Day, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rendered master.cf Postfix refuses (as a template bug would make one; postmap
    does not read it, only ``postfix check`` does): the deploy stops at activate with
    Postfix's own complaint, before restarting or reloading anything. (The next test's
    deploy copies a good master.cf and converges.)"""
    deployer = day.site.deployer
    assert deployer is not None
    original = render.render

    def broken(*args: Any, **kwargs: Any) -> dict[str, render.RenderedFile]:
        files = original(*args, **kwargs)
        files["postfix/master.cf"] = render.RenderedFile(files["postfix/master.cf"].text + "bogus     inet2 n - n - - smtpd\n")
        return files

    monkeypatch.setattr(render, "render", broken)
    bad = day.capture()
    monkeypatch.undo()
    started = day.site.checked("mx1.example.net", "systemctl show -P ActiveEnterTimestampMonotonic opendkim")
    before = len(deployer.executed)
    with pytest.raises(DeployError) as failed:
        deployer.up(bad.resources, targets=day.host_names(bad, "mx1.example.net"))
    assert list(failed.value.failures) == ["gateway-mx1.example.net-activate"]
    message = failed.value.failures["gateway-mx1.example.net-activate"]
    # Without a terminal, postfix check says nothing on stderr (exit 1, the reason only in
    # syslog): run under script, the reason is in the error.
    assert 'fatal: invalid type field "inet2" in "bogus     inet2 n - n - - smtpd"' in message, message
    assert day.site.checked("mx1.example.net", "systemctl show -P ActiveEnterTimestampMonotonic opendkim") == started
    assert [(e.name, e.action) for e in deployer.executed[before:]] == [
        ("gateway-mx1.example.net-postfix-master-cf", "copy"), ("gateway-mx1.example.net-activate", "create")]


def test_a_changed_stack_reruns_exactly_what_changed_and_converges(day: Day) -> None:
    """A new alias domain and a new DKIM selector: the files whose text changed are
    copied (on mx1 also the master.cf the previous test broke), the key is written
    at its new path, activation re-runs and removes the old key; the hosts then sign
    with the new selector and accept the new domain."""
    site, deployer, old = day.site, day.site.deployer, day.current
    assert deployer is not None and old is not None
    values = copy.deepcopy(day.base)
    values["aliasDomains"] = [NEW_DOMAIN]
    values["dkim"]["selector"] = NEW_SELECTOR
    new = day.capture(values)
    site.publish(new.records(), ("example.net", NEW_DOMAIN))
    ran = deployer.up(new.resources)
    day.current = new

    for hostname in HOSTS:
        changed = _changed_paths(old, new, hostname)
        assert changed, "the alias domain and selector change rendered files"
        expected = {(f"gateway-{hostname}-{_resource_part(old, new, hostname, path)}", "copy") for path in changed}
        if hostname == "mx1.example.net":
            expected.add(("gateway-mx1.example.net-postfix-master-cf", "copy"))  # the broken one goes
        # The key's path changed, not the key: an update writes it there; activation
        # removes the old selector's key after the restart.
        expected |= {(f"gateway-{hostname}-dkim-key", "update"), (f"gateway-{hostname}-activate", "create")}
        # The new domain's policy directory (/var/www/mta-sts/example.org/.well-known) is
        # made by the packages step, whose command names every directory: it re-runs.
        expected.add((f"gateway-{hostname}-packages", "update"))
        assert {(e.name, e.action) for e in ran if e.name.startswith(f"gateway-{hostname}-")} == expected
        listing = site.checked(hostname, "stat -c '%n %a %U' /etc/opendkim/keys/*; postconf -h relay_domains")
        assert listing.splitlines() == [f"/etc/opendkim/keys/{NEW_SELECTOR}.private 600 opendkim", f"example.net, {NEW_DOMAIN}"]
        verdict = site.submit_as_odoo(new, hostname, f"new selector via {hostname}")
        assert ("pass", "example.net", NEW_SELECTOR) in verdict.dkim and verdict.dmarc == "pass"
        stored = site.send_inbound(hostname, f"support@{NEW_DOMAIN}", f"new domain via {hostname}")
        assert stored["routes"] == f"support@{NEW_DOMAIN}"
        assert set(served_policies(day, new, hostname)) == {"example.net", NEW_DOMAIN}  # nginx reloaded with its server block


def _changed_paths(old: Deploy, new: Deploy, hostname: str) -> set[str]:
    """Remote paths whose rendered text differs between the two stacks (from render)."""
    from mailstack import plan
    from mailstack.config.stack import from_config

    layout = Layout()
    texts = []
    for deploy in (old, new):
        stack = from_config(deploy.values)
        gateway = next(g for g in stack.gateways if g.hostname == hostname)
        files = render.render(plan.build(stack), gateway=gateway)
        texts.append({layout.host_path(relative): f.text for relative, f in files.items()})
    return {path for path in texts[1] if texts[0].get(path) != texts[1][path]}


def _resource_part(old: Deploy, new: Deploy, hostname: str, path: str) -> str:
    resource = next(r for r in new.of_host(hostname).values() if r.type == COPY and r.inputs["remotePath"] == path)
    return resource.name.removeprefix(f"gateway-{hostname}-")


def test_apt_update_fails_the_deploy_when_the_mirror_is_gone(day: Day) -> None:
    """Plain ``apt-get update`` exits 0 without its mirror (it only warns), so a deploy
    would go on with stale lists; the component's ``--error-on=any`` stops it."""
    site, deployer = day.site, day.site.deployer
    assert deployer is not None and day.current is not None
    host = site.hosts["mx1.example.net"]
    host.stop_proxy()
    status, _, err = site.ssh("mx1.example.net", "apt-get update -q")
    assert status == 0 and "W: Some index files failed to download" in err
    with pytest.raises(DeployError) as failed:
        deployer.up(day.current.resources, replace={"gateway-mx1.example.net-packages"})
    message = failed.value.failures["gateway-mx1.example.net-packages"]
    assert "Process exited with status 100" in message and "Some index files failed to download" in message


def test_destroy_runs_the_delete_commands(day: Day) -> None:
    """``pulumi destroy``: the secrets written from stdin are removed; the copied files
    stay (CopyToRemote deletes nothing), as docs/gateway.md says."""
    site, deployer = day.site, day.site.deployer
    assert deployer is not None
    ran = deployer.up({})
    for hostname in HOSTS:
        assert {(e.name, e.action) for e in ran if hostname in e.name} == {
            (f"gateway-{hostname}-dkim-key", "delete"), (f"gateway-{hostname}-odoo-password", "delete")}
        assert site.checked(hostname, "ls -A /etc/opendkim/keys; test ! -e /etc/mailstack/odoo-password && echo gone") == "gone\n"
        assert site.checked(hostname, "test -f /etc/postfix/main.cf && echo kept") == "kept\n"
    assert deployer.state == {}
