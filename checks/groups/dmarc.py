"""DMARC checks (RFC 9989, DMARCbis): the record at ``_dmarc``, its syntax, tags
DMARCbis removed, the policy's strength (test mode, p=none), authorisation of external
report destinations (§4.6 / RFC 9990), and whether each declared sender can align
(§4.4) given what is published. Policy discovery and the Organizational Domain come
from the DNS tree walk (§4.10, ``mailstack.rules.dmarc.discover``), not the Public
Suffix List."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailstack.checks.dns.answer import DnsError, Reason
from mailstack.checks.engine.context import CheckContext, gather, settled
from mailstack.checks.engine.finding import (
    Finding,
    errored,
    failed,
    passed,
    skipped,
    warned,
)
from mailstack.checks.engine.registry import check
from mailstack.core import names, zonefile
from mailstack.core.model import MailDomain, Sender
from mailstack.core.record import Record
from mailstack.rules import dkim, dmarc, senders, spf


@dataclass(frozen=True, slots=True)
class DmarcObservation:
    """The DMARC records that apply to a domain: its own, or (undeclared) those of the
    parent the tree walk found."""

    domain: str
    records: tuple[str, ...]
    error: str | None = None
    #: The parent whose record applies (RFC 9989 §4.10.1) when the domain has none.
    inherited_from: str | None = None

    @property
    def name(self) -> str:
        return dmarc.record_name(self.inherited_from or self.domain)

    @property
    def record(self) -> str | None:
        return self.records[0] if len(self.records) == 1 else None


def _records(ctx: CheckContext, domain: str) -> Awaitable[tuple[str, ...]]:
    """The v=DMARC1 TXT values at ``_dmarc.<domain>``, asked once per run (a parent
    several domains' walks reach, e.g. ``_dmarc.<tld>``, is asked once); DnsError raised."""
    async def fetch() -> tuple[str, ...]:
        texts = (await ctx.dns.txt(dmarc.record_name(domain))).texts()
        return tuple(t for t in texts if dmarc.is_dmarc(t))
    return ctx.observe(f"dmarc-records:{domain}", fetch)


async def discovery(ctx: CheckContext, domain: str) -> dmarc.Discovery:
    """The tree walk of ``domain`` (RFC 9989 §4.10) through the run's resolver: every
    name of the walk asked at once, then decided by ``dmarc.discover``. DnsError when a
    name the decision depends on could not be asked."""
    steps = dmarc.walk(domain)
    answers = await settled(_records(ctx, name) for name in steps)
    found: dict[str, str | None] = {}
    for name, answer in zip(steps, answers):
        if dmarc.decided(domain, found):
            break
        if isinstance(answer, DnsError) and answer.reason is Reason.REFUSED and name != steps[0]:
            # An authoritative-only server (``--nameserver <primary>``, the CI gate's
            # setting) answers for its zones and refuses the names above them: after it
            # answered the domain itself, a refusal there means "not served here", so
            # the walk goes on as for no record (a resolver that refuses everything has
            # already failed the domain's own question above).
            found[name] = None
            continue
        if isinstance(answer, DnsError):
            raise answer
        if isinstance(answer, BaseException):
            raise answer
        found[name] = dmarc.single_record(answer)
    return dmarc.discover(domain, found)


def organizational_domain(ctx: CheckContext, domain: str) -> Awaitable[str]:
    """The Organizational Domain by the tree walk (memoised per run); DnsError raised."""
    async def compute() -> str:
        try:
            return (await discovery(ctx, domain)).organizational_domain
        except DnsError as err:
            if err.reason is not Reason.REFUSED:
                raise
            # Refused by the run's servers (an authoritative-only --nameserver asked for
            # a name outside its zones, e.g. a third party's bounce domain): DNS cannot
            # be asked here, so the Public Suffix List decides, as offline.
            return dmarc.organizational_domain(domain)
    return ctx.observe(f"dmarc-org:{domain}", compute)


def observe(ctx: CheckContext, domain: str) -> Awaitable[DmarcObservation]:
    """The DMARC record of a domain. Undeclared, a domain without one takes the record
    the tree walk finds above it, as receivers do (RFC 9989 §4.10.1). A declaration
    plans a record for each domain, so there the domain's own is judged."""
    async def compute() -> DmarcObservation:
        try:
            own = await _records(ctx, domain)
        except DnsError as err:
            return DmarcObservation(domain, (), str(err))
        if own or ctx.declared:
            return DmarcObservation(domain, own)
        try:
            found = await discovery(ctx, domain)
        except DnsError as err:
            return DmarcObservation(domain, (), str(err))
        if found.policy_domain is None or not found.inherited:
            return DmarcObservation(domain, own)
        return DmarcObservation(domain, await _records(ctx, found.policy_domain), inherited_from=found.policy_domain)
    return ctx.observe(f"dmarc:{domain}", compute)


def tags(obs: DmarcObservation) -> dict[str, str] | None:
    """The parsed and valid tags, None when absent, duplicated or invalid."""
    if obs.record is None:
        return None
    try:
        parsed = dmarc.parse(obs.record)
        dmarc.validate(parsed)
    except dmarc.DmarcError:
        return None
    return parsed


def _planned(ctx: CheckContext, domain: str) -> Record | None:
    by_name = ctx.memo("planned:dmarc", lambda: {r.name: r for r in reversed(ctx.planned) if r.purpose == "dmarc"})
    return by_name.get(dmarc.record_name(domain))


def _fix(ctx: CheckContext, domain: str) -> str:
    record = _planned(ctx, domain)
    if record:
        return zonefile.line(record)
    return f'{dmarc.record_name(domain)}. IN TXT "{dmarc.VERSION}; p=none; rua=mailto:dmarc-reports@{domain}"'


_Judge = Callable[[CheckContext, DmarcObservation], "list[Finding] | Awaitable[list[Finding]]"]


async def _each(ctx: CheckContext, id: str, judge: _Judge) -> list[Finding]:
    wanted = [d for d in ctx.domains if not (ctx.declared and _planned(ctx, d) is None)]
    observed = dict(zip(wanted, await gather(observe(ctx, d) for d in wanted)))
    judged: list[list[Finding] | Awaitable[list[Finding]]] = []
    for domain in ctx.domains:
        obs = observed.get(domain)
        if obs is None:
            judged.append([skipped(id, f"{domain}: no DMARC record is declared")])
        elif obs.error:
            judged.append([errored(id, f"{dmarc.record_name(domain)}: DNS error: {obs.error}")])
        else:
            judged.append(judge(ctx, obs))
    later = iter(await gather(j for j in judged if inspect.isawaitable(j)))
    return [f for j in judged for f in (next(later) if inspect.isawaitable(j) else j)]


@check("dmarc.present", ref="RFC 9989 §4.10.1")
async def present(ctx: CheckContext) -> list[Finding]:
    """Exactly one DMARC record at ``_dmarc.<domain>``."""
    def judge(ctx: CheckContext, obs: DmarcObservation) -> list[Finding]:
        if not obs.records:
            return [failed("dmarc.present", f"{obs.name}: no DMARC record", expected="v=DMARC1; p=...", fix=_fix(ctx, obs.domain))]
        if len(obs.records) > 1:
            return [failed("dmarc.present", f"{obs.name}: {len(obs.records)} DMARC records; receivers apply none", found=" | ".join(obs.records), fix=_fix(ctx, obs.domain))]
        if obs.inherited_from:
            return [passed("dmarc.present", f"{obs.domain}: no own record; {obs.name} applies (organizational domain)", found=obs.records[0])]
        return [passed("dmarc.present", f"{obs.name}: one DMARC record", found=obs.records[0])]
    return await _each(ctx, "dmarc.present", judge)


@check("dmarc.syntax", ref="RFC 9989 §4.7")
async def syntax(ctx: CheckContext) -> list[Finding]:
    """The record parses and every tag value is valid (p, sp, np, psd, t, adkim, aspf, rua, ruf, fo); unknown tags are noted."""
    def judge(ctx: CheckContext, obs: DmarcObservation) -> list[Finding]:
        if obs.record is None:
            return [skipped("dmarc.syntax", f"{obs.name}: no single DMARC record (see dmarc.present)")]
        try:
            notes = dmarc.validate(dmarc.parse(obs.record))
        except dmarc.DmarcError as err:
            return [failed("dmarc.syntax", f"{obs.name}: {err}", found=obs.record, fix=_fix(ctx, obs.domain))]
        unknown = [n for n in notes if n.startswith("unknown tag")]
        if unknown:
            # RFC 9989 §4.7: receivers ignore unknown tags, so the record still works.
            return [passed("dmarc.syntax", f"{obs.name}: valid; {len(unknown)} unknown tag(s) ignored", detail="; ".join(unknown), found=obs.record)]
        return [passed("dmarc.syntax", f"{obs.name}: valid", found=obs.record)]
    return await _each(ctx, "dmarc.syntax", judge)


@check("dmarc.removed-tags", ref="RFC 9989 §4.7, Appendix C")
async def removed_tags(ctx: CheckContext) -> list[Finding]:
    """No tag RFC 9989 removed (pct, rf, ri): receivers ignore them, so they promise what is not done."""
    def judge(ctx: CheckContext, obs: DmarcObservation) -> list[Finding]:
        parsed = tags(obs)
        if parsed is None:
            return [skipped("dmarc.removed-tags", f"{obs.name}: no valid DMARC record")]
        removed = dmarc.removed_tags(parsed)
        if not removed:
            return [passed("dmarc.removed-tags", f"{obs.name}: no removed tag")]
        planned = _planned(ctx, obs.domain)
        fix = zonefile.line(planned) if planned else f'{obs.name}. IN TXT "{dmarc.without_removed(parsed)}"'
        return [warned(
            "dmarc.removed-tags", f"{obs.name}: {', '.join(f'{n}=' for n in removed)} removed by RFC 9989; receivers ignore it",
            detail="; ".join(f"{n}: {dmarc.REMOVED_TAGS[n]}" for n in removed), found=obs.record or "", fix=fix,
        )]
    return await _each(ctx, "dmarc.removed-tags", judge)


@check("dmarc.policy", ref="RFC 9989 §4.7 (p=, sp=, t=), §5.5")
async def policy(ctx: CheckContext) -> list[Finding]:
    """The policy is the declared one; p=none without reports and test mode (t=y) are flagged."""
    def judge(ctx: CheckContext, obs: DmarcObservation) -> list[Finding]:
        parsed = tags(obs)
        if parsed is None:
            return [skipped("dmarc.policy", f"{obs.name}: no valid DMARC record")]
        p = dmarc.applied_policy(parsed, inherited=bool(obs.inherited_from))
        declared = ctx.stack.dmarc.policy if ctx.stack else None
        if declared and p != declared:
            return [failed("dmarc.policy", f"{obs.name}: p={p}, declared p={declared}", expected=f"p={declared}", found=obs.record or "", fix=_fix(ctx, obs.domain))]
        test_declared = ctx.stack.dmarc.testing if ctx.stack else False
        if ctx.stack and dmarc.testing(parsed) != test_declared:
            return [failed("dmarc.policy", f"{obs.name}: t={parsed.get('t', 'n')}, declared t={'y' if test_declared else 'n'}", found=obs.record or "", fix=_fix(ctx, obs.domain))]
        if p == "none" and not parsed.get("rua"):
            return [warned("dmarc.policy", f"{obs.name}: p=none without rua: no policy and nobody reads reports", found=obs.record or "", fix=_fix(ctx, obs.domain))]
        if p == "none":
            return [warned("dmarc.policy", f"{obs.name}: p=none (monitoring only); move to quarantine once reports are clean", found=obs.record or "")]
        if dmarc.testing(parsed):
            return [warned("dmarc.policy", f"{obs.name}: p={p} in test mode (t=y): receivers do not apply it", found=obs.record or "",
                           fix="remove t=y once the reports show every legitimate sender aligned (mailstack:dmarc.testMode: false)")]
        return [passed("dmarc.policy", f"{obs.name}: p={p}")]
    return await _each(ctx, "dmarc.policy", judge)


#: The label below a domain ``dmarc.nonexistent`` asks for: random, so no one has it.
def random_label() -> str:
    return f"ms-nx-{secrets.token_hex(6)}"


@check("dmarc.nonexistent", ref="RFC 9989 §4.7 (np=), §5.3")
async def nonexistent(ctx: CheckContext) -> list[Finding]:
    """Made-up subdomains get a policy at least as strict as the domain's own (np=, else sp=, else p=)."""
    async def judge(ctx: CheckContext, obs: DmarcObservation) -> list[Finding]:
        id = "dmarc.nonexistent"
        parsed = tags(obs)
        if parsed is None:
            return [skipped(id, f"{obs.name}: no valid DMARC record")]
        probe = f"{random_label()}.{names.normalize(obs.domain)}"
        # The summary names the made-up name by its shape (stable from run to run, for
        # reports compared across runs); the name asked is in ``detail``.
        made_up, asked = f"<made-up>.{obs.domain}", f"asked {probe}"
        try:
            answer = await ctx.dns.query(probe, "A")
            walked = await discovery(ctx, probe)
        except DnsError as err:
            return [errored(id, f"{made_up}: DNS error: {err}", detail=asked)]
        if walked.record is None or walked.policy_domain is None:
            return [failed(id, f"{made_up}: no DMARC record applies to a made-up subdomain of {obs.domain}", fix=_fix(ctx, obs.domain), detail=asked)]
        try:
            found = dmarc.parse(walked.record)
            dmarc.validate(found)
        except dmarc.DmarcError as err:
            return [failed(id, f"{dmarc.record_name(walked.policy_domain)}: {err}", found=walked.record, fix=_fix(ctx, obs.domain))]
        own = dmarc.applied_policy(parsed, inherited=bool(obs.inherited_from))
        missing = answer.nxdomain
        where = dmarc.record_name(walked.policy_domain)
        tag = dmarc.applied_tag(found, inherited=walked.inherited, nonexistent=missing)
        chain = (dmarc.NONEXISTENT_TAGS if missing else dmarc.SUBDOMAIN_TAGS) if walked.inherited else ("p",)
        absent = [f"no {t}=" for t in reversed(chain[:chain.index(tag)])]  # the tags it fell back past
        how = f"{tag}=" + (f" ({', '.join(absent)})" if absent else "")
        gets = found[tag]
        declared = ctx.stack.dmarc.nonexistent_policy if ctx.stack else None
        if declared and found.get("np") != declared and walked.policy_domain == obs.domain:
            return [failed(id, f"{where}: np={found.get('np', '(none)')}, declared np={declared} (dmarc.nonexistentPolicy)",
                           expected=f"np={declared}", found=walked.record, fix=_fix(ctx, obs.domain))]
        if not missing:
            # A wildcard (or the name really exists): receivers see an existing subdomain,
            # so sp= applies, not np=; the made-up names of this domain all exist.
            text = (f"{made_up} exists (a wildcard answers every made-up subdomain of {obs.domain}), so receivers apply sp=, not np=: "
                    f"{where} gives p={gets} by {how}")
        else:
            text = f"{made_up} does not exist (NXDOMAIN): {where} gives it p={gets} by {how}"
        if dmarc.stricter_or_equal(gets, own):
            return [passed(id, text + f", as strict as {obs.domain}'s p={own}", found=walked.record, detail=asked)]
        fixed = "np" if missing else "sp"  # the tag a fix sets
        planned = _planned(ctx, walked.policy_domain)
        fix = zonefile.line(planned) if planned and dmarc.parse(planned.content).get(fixed) == own else \
            f'{where}. IN TXT "{dmarc.with_tag(found, fixed, own)}"' + (" (mailstack:dmarc.nonexistentPolicy: " + own + ")" if fixed == "np" else "")
        return [warned(id, text + f", weaker than {obs.domain}'s p={own}: anyone can send as any-name.{obs.domain} and receivers "
                       f"{'deliver it unchecked' if gets == 'none' else 'only quarantine it'}", found=walked.record, expected=f"{fixed}={own}", fix=fix, detail=asked)]
    return await _each(ctx, "dmarc.nonexistent", judge)


def external_report_domains(domain: str, parsed: dict[str, str]) -> list[str]:
    """mailto: report domains outside ``domain`` (RFC 7489 §7.1 needs their consent)."""
    found = dmarc.report_domains([*dmarc.uris(parsed, "rua"), *dmarc.uris(parsed, "ruf")])
    return list(dict.fromkeys(d for d in found if dmarc.is_external(d, domain)))


@check("dmarc.report-auth", ref="RFC 9990 (external destinations), RFC 7489 §7.1")
async def report_auth(ctx: CheckContext) -> list[Finding]:
    """Each external rua/ruf domain authorises reports (``<domain>._report._dmarc.<rua-domain>``)."""
    async def judge(ctx: CheckContext, obs: DmarcObservation) -> list[Finding]:
        parsed = tags(obs)
        if parsed is None:
            return [skipped("dmarc.report-auth", f"{obs.name}: no valid DMARC record")]
        policy_domain = obs.inherited_from or obs.domain  # the record's own domain is authorised
        externals = external_report_domains(policy_domain, parsed)
        if not externals:
            return [passed("dmarc.report-auth", f"{obs.name}: every report destination is inside {policy_domain}")]

        async def one(report_domain: str) -> Finding:
            name = dmarc.report_authorization_name(policy_domain, report_domain)
            try:
                texts = (await ctx.dns.txt(name)).texts()
            except DnsError as err:
                return errored("dmarc.report-auth", f"{name}: DNS error: {err}")
            if any(dmarc.is_dmarc(t) for t in texts):
                return passed("dmarc.report-auth", f"{report_domain} authorises reports about {policy_domain}")
            return failed(
                "dmarc.report-auth", f"{report_domain} does not authorise reports about {policy_domain}; receivers drop them",
                expected=f"{name} TXT {dmarc.REPORT_AUTHORIZATION}", found=" | ".join(texts) or "nothing",
                fix=f'{name}. IN TXT "{dmarc.REPORT_AUTHORIZATION}"',
            )

        return await gather(one(d) for d in externals)
    return await _each(ctx, "dmarc.report-auth", judge)


@dataclass(frozen=True, slots=True)
class Path:
    """How one sender's mail can pass DMARC: the SPF (Return-Path) and DKIM (d=) domains."""

    sender: str
    declared: Sender
    spf_domain: str | None  # the Return-Path domain, None when unknown
    dkim_name: str | None  # the key record name signatures use, None when none is declared


def sender_paths(stack: MailDomain, domain: str) -> list[Path]:
    """The documented Return-Path and DKIM domain of each declared sender."""
    paths: list[Path] = []
    for sender in stack.outbound:
        entries = senders.dkim_entries(stack, sender, domain, None)
        dkim_name = dkim.record_name(entries[0].selector, domain) if entries else None
        paths.append(Path(sender.kind.value, sender, senders.return_path_domain(stack, sender, domain), dkim_name))
    return paths


@check("dmarc.alignment", ref="RFC 9989 §4.4, §4.10.2")
async def alignment(ctx: CheckContext) -> list[Finding]:
    """Each declared sender can pass DMARC: aligned SPF that authorises it, or an aligned DKIM key."""
    if ctx.stack is None:
        return [skipped("dmarc.alignment", "needs a declaration of the senders (--stack)")]
    from mailstack.checks.groups.spf import (
        tree,  # the same memoised SPF fetch as the spf group
    )

    stack = ctx.stack

    async def one(domain: str, path: Path) -> Finding:
        spf_ok = False
        try:
            spf_aligned = bool(path.spf_domain) and await _walk_aligned(ctx, path.spf_domain or "", domain, stack.dmarc.aspf)
        except DnsError as err:
            return errored("dmarc.alignment", f"{domain}/{path.sender}: DNS error finding the Organizational Domain: {err}")
        if spf_aligned and path.spf_domain:
            spf_tree = await tree(ctx, domain) if path.spf_domain == domain else None
            if spf_tree and spf_tree.record and not spf_tree.syntax_error:
                published = {str(t) for t in spf.parse(spf_tree.record)}
                wanted = {str(spf.parse_term(t)) for t in senders.spf_terms(stack, path.declared)}
                spf_ok = wanted <= published
        dkim_ok = False
        if path.dkim_name:
            try:
                dkim_ok = any(dkim.is_live_key(t) for t in (await ctx.dns.txt(path.dkim_name)).texts())
            except DnsError as err:
                return errored("dmarc.alignment", f"{domain}/{path.sender}: DNS error: {err}")
        ways = [w for w, ok in (("SPF", spf_ok), ("DKIM", dkim_ok)) if ok]
        if ways:
            return passed("dmarc.alignment", f"{domain}/{path.sender}: can align through {' and '.join(ways)}")
        return failed(
            "dmarc.alignment", f"{domain}/{path.sender}: neither SPF nor DKIM can align with From {domain}",
            detail=f"Return-Path domain {path.spf_domain or 'unknown'}; DKIM key {path.dkim_name or 'none declared'}",
            fix=f"publish {path.dkim_name} as declared" if path.dkim_name else "declare the sender's DKIM key (dkimKey) and publish it",
        )

    return await gather(one(domain, path) for domain in stack.domains for path in sender_paths(stack, domain))


async def _walk_aligned(ctx: CheckContext, identifier: str, from_domain: str, mode: str) -> bool:
    """``dmarc.aligned`` with the Organizational Domains the tree walk finds (RFC 9989 §4.10.2)."""
    if mode == "s":
        return dmarc.aligned(identifier, from_domain, mode)
    pair = (names.normalize(identifier), names.normalize(from_domain))
    orgs = dict(zip(pair, await gather(organizational_domain(ctx, d) for d in pair)))
    return dmarc.aligned(identifier, from_domain, mode, orgs.__getitem__)
