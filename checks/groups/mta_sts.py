"""MTA-STS (RFC 8461) and SMTP TLS reporting (RFC 8460) records, when declared.

The TXT records are compared with the declaration (the MTA-STS ``id`` is derived from
the policy text, so an equal id means the declared policy was published), and the
policy file itself is fetched over HTTPS (``mailstack.checks.probes.mta_sts``) and compared field
by field with the declared one. The served policy's quality is judged on its own, as
for any domain: a mode that does not enforce, a ``max_age`` under a week, a live MX its
patterns do not match (``mailstack.rules.mta_sts.mx_matches``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable

from mailstack.checks.dns.answer import DnsError
from mailstack.checks.engine.context import CheckContext, gather
from mailstack.checks.engine.finding import (
    Finding,
    errored,
    failed,
    passed,
    skipped,
    warned,
)
from mailstack.checks.engine.registry import check
from mailstack.checks.groups import mx as mx_checks
from mailstack.checks.probes import mta_sts as mta_sts_policy
from mailstack.core import zonefile
from mailstack.core.record import Record
from mailstack.rules import mta_sts
from mailstack.rules import mx as mx_rules


async def _run(ctx: CheckContext, id: str, purpose: str, prefix: str, what: str) -> list[Finding]:
    if not ctx.declared:
        return await _undeclared(ctx, id, prefix, what)
    declared: list[Record] = [r for r in ctx.planned if r.purpose == purpose]
    if not declared:
        return [skipped(id, f"{what} is not declared")]

    async def one(record: Record) -> Finding:
        try:
            texts = [t for t in (await ctx.dns.txt(record.name)).texts() if mta_sts.is_version(t, prefix)]
        except DnsError as err:
            return errored(id, f"{record.name}: DNS error: {err}")
        if texts == [record.content]:
            return passed(id, f"{record.name}: {what} record as declared", found=texts[0])
        if not texts:
            return failed(id, f"{record.name}: no {what} record", expected=record.content, fix=zonefile.line(record))
        return failed(id, f"{record.name}: {what} record differs from the declaration", expected=record.content, found=" | ".join(texts), fix=zonefile.line(record))

    return await gather(one(record) for record in declared)


async def _undeclared(ctx: CheckContext, id: str, prefix: str, what: str) -> list[Finding]:
    name = mta_sts.record_name(ctx.domain) if prefix == mta_sts.STS_VERSION else mta_sts.tlsrpt_record_name(ctx.domain)
    try:
        texts = [t for t in (await ctx.dns.txt(name)).texts() if mta_sts.is_version(t, prefix)]
    except DnsError as err:
        return [errored(id, f"{name}: DNS error: {err}")]
    if not texts:
        return [skipped(id, f"{name}: no {what} record (optional)")]
    if len(texts) > 1:
        return [failed(id, f"{name}: {len(texts)} {what} records; senders ignore them all", found=" | ".join(texts))]
    return [passed(id, f"{name}: {what} record published", found=texts[0])]


@check("mta-sts.record", ref="RFC 8461 §3.1")
async def mta_sts_record(ctx: CheckContext) -> list[Finding]:
    """``_mta-sts`` TXT is ``v=STSv1; id=...`` with the id of the declared policy."""
    return await _run(ctx, "mta-sts.record", "mta-sts", mta_sts.STS_VERSION, "MTA-STS")


@check("tls-rpt.record", ref="RFC 8460 §3")
async def tls_rpt_record(ctx: CheckContext) -> list[Finding]:
    """``_smtp._tls`` TXT is ``v=TLSRPTv1; rua=...`` as declared."""
    return await _run(ctx, "tls-rpt.record", "tls-rpt", mta_sts.TLSRPT_VERSION, "TLS-RPT")


def _declared_policy(ctx: CheckContext, domain: str) -> dict[str, object] | None:
    if ctx.stack is None or ctx.stack.mta_sts is None:
        return None
    hosts = [mx.host for mx in ctx.plan.mx_hosts[domain]] if ctx.plan else []
    if not hosts:
        return None
    return mta_sts.parse_policy(mta_sts.policy_text(ctx.stack.mta_sts.mode, hosts, ctx.stack.mta_sts.max_age))


async def _policy_domains(ctx: CheckContext) -> list[str]:
    """Domains whose policy is fetched: declared ones, or (undeclared) one with a TXT."""
    if ctx.declared:
        return [d for d in ctx.domains if _declared_policy(ctx, d) is not None]
    texts = (await ctx.dns.txt(mta_sts.record_name(ctx.domain))).texts()
    return [ctx.domain] if any(mta_sts.is_version(t, mta_sts.STS_VERSION) for t in texts) else []


def _render(policy: dict[str, object]) -> str:
    mx = policy.get("mx")
    hosts = " ".join(sorted(mx)) if isinstance(mx, list) else ""
    return f"mode={policy.get('mode')} max_age={policy.get('max_age')} mx={hosts}"


async def _fetch(ctx: CheckContext, domain: str) -> mta_sts_policy.PolicyFetch:
    """The policy of a domain over HTTPS (a blocking probe, in the run's probe threads)."""
    async def compute() -> mta_sts_policy.PolicyFetch:
        https = ctx.https
        return await ctx.blocking(lambda: mta_sts_policy.fetch(ctx.resolver, domain, port=https.port, cafile=https.cafile, timeout=https.timeout))
    return await ctx.observe(f"mta-sts-policy:{domain}", compute)


@check("mta-sts.policy", ref="RFC 8461 §3.2, §3.3")
async def mta_sts_policy_file(ctx: CheckContext) -> list[Finding]:
    """The policy is served at https://mta-sts.<domain>/.well-known/mta-sts.txt with a valid
    certificate, parses, and (declared) has the declared mode, MX hosts and max_age."""
    domains = await _policy_domains(ctx)
    if not domains:
        return [skipped("mta-sts.policy", "MTA-STS is not declared" if ctx.declared else "no _mta-sts record published")]

    async def one(domain: str) -> Finding:
        got = await _fetch(ctx, domain)
        expected = _declared_policy(ctx, domain)
        fix = f"serve the declared policy at {got.url}" + (f": {_render(expected)}" if expected else "")
        if got.error:
            return errored("mta-sts.policy", f"{got.url}: {got.error}")
        if got.problem or got.text is None:
            return failed("mta-sts.policy", f"{got.url}: {got.problem}; senders treat the domain as having no policy", fix=fix)
        try:
            policy = mta_sts.parse_policy(got.text)
        except mta_sts.PolicyError as err:
            return failed("mta-sts.policy", f"{got.url}: {err}", found=got.text.strip(), fix=fix)
        published = {**policy, "mx": sorted(policy["mx"])} if isinstance(policy["mx"], list) else policy
        if expected is not None and _render(published) != _render(expected):
            return failed("mta-sts.policy", f"{got.url}: the policy differs from the declaration", expected=_render(expected), found=_render(published), fix=fix)
        if not got.content_type.lower().startswith("text/plain"):
            return warned("mta-sts.policy", f"{got.url}: served as {got.content_type or 'no media type'}, not text/plain", found=_render(published))
        return passed("mta-sts.policy", f"{got.url}: {_render(published)}")

    return await gather(one(domain) for domain in domains)


async def _published(ctx: CheckContext, id: str, domain: str) -> tuple[str, dict[str, object]] | Finding:
    """The parsed policy served for a domain, or a skip pointing at ``mta-sts.policy``
    (which reports why it could not be fetched or parsed)."""
    got = await _fetch(ctx, domain)
    if got.error or got.problem or got.text is None:
        return skipped(id, f"{got.url}: no policy to judge (see mta-sts.policy)")
    try:
        return got.url, mta_sts.parse_policy(got.text)
    except mta_sts.PolicyError:
        return skipped(id, f"{got.url}: the policy does not parse (see mta-sts.policy)")


def _change(ctx: CheckContext, what: str) -> str:
    """How to change the served policy: the stack's key, or the file and its id."""
    if ctx.declared:
        return f"set mailstack:mtaSts.{what} and run `pulumi up` (the policy file and the _mta-sts id change together)"
    return f"set {what} in the policy file and publish a new id in _mta-sts (senders refetch only when the id changes)"


async def _each_policy(ctx: CheckContext, id: str, judge: Callable[[str, str, dict[str, object]], Awaitable[Finding] | Finding]) -> list[Finding]:
    domains = await _policy_domains(ctx)
    if not domains:
        return [skipped(id, "MTA-STS is not declared" if ctx.declared else "no _mta-sts record published")]

    async def one(domain: str) -> Finding:
        got = await _published(ctx, id, domain)
        if isinstance(got, Finding):
            return got
        result = judge(domain, *got)
        return await result if inspect.isawaitable(result) else result

    return await gather(one(domain) for domain in domains)


@check("mta-sts.mode", ref="RFC 8461 §5, §8.3")
async def mta_sts_mode(ctx: CheckContext) -> list[Finding]:
    """The served policy enforces, or has been in ``testing``/``none`` only briefly:
    ``testing`` only reports failures (through TLS-RPT) and ``none`` withdraws the
    policy, so neither protects the mail — fine for the weeks of reading reports or of
    a withdrawal, not for good. Since when the policy is as served is its HTTP
    Last-Modified (``mailstack.rules.mta_sts.mode_left`` judges)."""
    async def judge(domain: str, url: str, policy: dict[str, object]) -> Finding:
        mode = str(policy["mode"])
        changed = (await _fetch(ctx, domain)).last_modified
        since = f" since {time.strftime('%Y-%m-%d', time.gmtime(changed))}" if changed is not None else ""
        problem = mta_sts.mode_left(mode, changed, time.time())
        if problem is None:
            if mode == "enforce":
                return passed("mta-sts.mode", f"{url}: mode enforce")
            left = (changed or 0) + mta_sts.MODE_GRACE
            return passed("mta-sts.mode", f"{url}: mode {mode}{since}, within {mta_sts.MODE_GRACE // 86400} days",
                          detail=f"switch to enforce by {time.strftime('%Y-%m-%d', time.gmtime(left))}, once TLS-RPT reports show no failures")
        why = ("senders deliver even when TLS fails and only report it (TLS-RPT)" if mode == "testing"
               else "senders drop the policy: mail is not protected")
        return warned("mta-sts.mode", f"{url}: {problem}{since}: {why}", found=f"mode: {mode}", expected="mode: enforce",
                      fix=f"once TLS-RPT reports show no failures, {_change(ctx, 'mode: enforce')}")
    return await _each_policy(ctx, "mta-sts.mode", judge)


@check("mta-sts.max-age", ref="RFC 8461 §3.2")
async def mta_sts_max_age(ctx: CheckContext) -> list[Finding]:
    """``max_age`` is at least one week: the RFC expects "weeks or greater"; a shorter
    lifetime lets cached policies lapse, and a sender without one is open to a
    downgrade at its next fetch."""
    def judge(domain: str, url: str, policy: dict[str, object]) -> Finding:
        age = policy["max_age"]
        assert isinstance(age, int)
        if age >= mta_sts.ADVISED_MAX_AGE:
            return passed("mta-sts.max-age", f"{url}: max_age {age} s ({age / 86400:g} days)")
        return warned("mta-sts.max-age", f"{url}: max_age {age} s ({age / 86400:g} days) is under one week", found=f"max_age: {age}",
                      expected=f"max_age: {mta_sts.ADVISED_MAX_AGE} or more", fix=_change(ctx, f"maxAge: {mta_sts.ADVISED_MAX_AGE}" if ctx.declared else f"max_age: {mta_sts.ADVISED_MAX_AGE}"))
    return await _each_policy(ctx, "mta-sts.max-age", judge)


@check("mta-sts.mx", ref="RFC 8461 §4.1, §5")
async def mta_sts_mx(ctx: CheckContext) -> list[Finding]:
    """Every live MX host of the domain matches an ``mx:`` pattern of the served policy
    (``*.`` is one label): in mode enforce senders refuse to deliver to any other MX
    (fail), in testing they report it (warn)."""
    async def judge(domain: str, url: str, policy: dict[str, object]) -> Finding:
        patterns = policy["mx"]
        assert isinstance(patterns, list)
        if policy["mode"] == "none":
            return skipped("mta-sts.mx", f"{url}: mode none, the MX patterns are not used")
        live = await mx_checks.observe(ctx, domain)
        if live.error:
            return errored("mta-sts.mx", f"{domain}: DNS error reading the MX: {live.error}")
        hosts = sorted({t.host for t in live.targets if t.host != mx_rules.NULL_MX})
        if not hosts:
            return failed("mta-sts.mx", f"{domain}: no MX host, but {url} names {', '.join(patterns)}", fix="publish the MX or remove the policy")
        missing = mta_sts.unmatched(patterns, hosts)
        if not missing:
            return passed("mta-sts.mx", f"{url}: every MX ({', '.join(hosts)}) matches {', '.join(patterns)}")
        make = failed if policy["mode"] == "enforce" else warned
        fix = ("declare every MX host (gateways, inbound.mx) or remove the undeclared MX record, then `pulumi up` (it serves the policy of the declared MX set)" if ctx.declared else f"add mx: {missing[0]} (or a *. pattern) to the policy and publish a new id")
        return make("mta-sts.mx", f"{domain}: MX {', '.join(missing)} not matched by the policy at {url}: senders enforcing it do not deliver there",
                    found=", ".join(hosts), expected=", ".join(patterns), fix=fix)
    return await _each_policy(ctx, "mta-sts.mx", judge)
