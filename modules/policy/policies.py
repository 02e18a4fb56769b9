"""The mailstack policy pack: the plan's mail rules, applied to what a change registers.

``pulumi preview --policy-pack policy`` runs these against the resources a program
registers, so a pull request that would publish a broken mail record is refused before
anything reaches DNS. Every rule is imported from its rule module (spf, txt, dkim,
dmarc, protection, the plan's conflicts); this module only finds the records a policy
applies to and words the violation. Policies are importable and testable without the
Pulumi CLI; ``policy/__main__.py`` is the only place that builds the ``PolicyPack``
(constructing one serves gRPC and blocks forever).

Policy names are stable ids: the policy config file (``--policy-pack-config``) sets
their enforcement level by name. See docs/ci-gate.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from mailstack.core import txt
from mailstack.core.errors import MailstackError
from mailstack.core.record import Record
from mailstack.plan import Plan
from mailstack.plan.conflicts import conflicts
from mailstack.policy import resources as dns_resources
from mailstack.policy.context import (
    UNKNOWN,
    StackRecord,
    allow_delete,
    declared_plan,
    previous_records,
    stack_records,
)
from mailstack.rules import dane, dkim, dmarc, protection, spf

PACK_NAME = "mailstack-mail-dns"
MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

_DELETE_SCHEMA = PolicyConfigSchema(
    properties={
        "allowDelete": {"type": "boolean", "description": "allow deleting MX and planned records"},
        "previousRecords": {"type": "array", "description": "the previous deployment's records (JSON)"},
        "previousRecordsFile": {"type": "string", "description": "a file holding them"},
    }
)


def _records(args: ResourceValidationArgs) -> list[Record]:
    return dns_resources.to_records(args.resource_type, args.props)


def _resource_check(check: Callable[[Record, ReportViolation], None]) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    """Apply a per-record check to every record a DNS record resource publishes."""

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        # values that do not parse are reported once, by record-values-parse
        for record in dns_resources.parsable_records(args.resource_type, args.props):
            check(record, report)

    return validate


# -- resource policies ------------------------------------------------------------------


def _values_parse(args: ResourceValidationArgs, report: ReportViolation) -> None:
    try:
        _records(args)
    except dns_resources.RecordInputError as err:
        report(str(err), None)


def _txt_cloudflare_form(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not dns_resources.is_cloudflare(args.resource_type) or args.props.get("type") != "TXT":
        return
    content = dns_resources.raw_content(args.props)
    if txt.is_cloudflare_form(content):
        return
    try:
        plain = txt.unquote(content)
        expected = txt.quoted(plain)
    except ValueError:
        expected = "quoted strings"
    report(
        f"{args.props.get('name')}: TXT content must be quoted and split into strings of at most "
        f"{txt.MAX_STRING} bytes (Cloudflare stores it so; anything else shows a diff on every run): "
        f"got {content[:80]!r}, expected {expected[:80]!r}",
        None,
    )


def _spf_valid(record: Record, report: ReportViolation) -> None:
    if record.type != "TXT" or not spf.is_spf(record.content):
        return
    try:
        spf.parse(record.content)
    except spf.SpfSyntaxError as err:
        report(f"{record.name}: SPF record does not parse: {err}", None)
        return
    for problem in spf.budget_problems(record.content):
        report(f"{record.name}: {problem}", None)


def _spf_size_advised(record: Record, report: ReportViolation) -> None:
    if record.type != "TXT" or not spf.is_spf(record.content):
        return
    size = spf.size(record.content)
    if spf.SIZE_ADVISED < size <= spf.SIZE_LIMIT:
        report(
            f"{record.name}: SPF record is {size} bytes, over the advised {spf.SIZE_ADVISED} "
            f"(RFC 7208 §3.4: the answer may not fit 512 bytes of UDP)",
            None,
        )


def _dkim_record(record: Record) -> dkim.KeyRecord | str | None:
    """The parsed key record, an error message, or None when not a DKIM TXT."""
    if record.type != "TXT" or protection.mail_purpose(record) != "dkim":
        return None
    if dkim.PENDING_KEY in record.content:
        return f"the key is the placeholder {dkim.PENDING_KEY}; the generated key was not filled in"
    try:
        return dkim.parse(record.content)
    except dkim.DkimKeyError as err:
        return str(err)


def _dkim_key_valid(record: Record, report: ReportViolation) -> None:
    parsed = _dkim_record(record)
    if isinstance(parsed, str):
        report(f"{record.name}: DKIM key record is unusable: {parsed}", None)
    elif parsed is not None:
        problem = dkim.size_problem(parsed)
        if problem and problem[0] == "fail":
            report(f"{record.name}: {problem[1]}", None)


def _dkim_key_size_advised(record: Record, report: ReportViolation) -> None:
    parsed = _dkim_record(record)
    if isinstance(parsed, dkim.KeyRecord):
        problem = dkim.size_problem(parsed)
        if problem and problem[0] == "warn":
            report(f"{record.name}: {problem[1]}", None)


def _dmarc_valid(record: Record, report: ReportViolation) -> None:
    if record.type != "TXT" or protection.mail_purpose(record) != "dmarc":
        return
    try:
        tags = dmarc.parse(record.content)
        dmarc.validate(tags)
    except dmarc.DmarcError as err:
        report(f"{record.name}: DMARC record is invalid: {err}", None)
        return
    # The planner never writes a tag RFC 9989 removed (dmarc.build): neither may the zone.
    for name in dmarc.removed_tags(tags):
        report(f"{record.name}: DMARC tag {name}= was removed by RFC 9989: {dmarc.REMOVED_TAGS[name]}", None)


def _tlsa_valid(record: Record, report: ReportViolation) -> None:
    if record.type != "TLSA":
        return
    try:
        dane.parse(record.content)
    except dane.DaneError as err:
        report(f"{record.name}: TLSA record unusable for DANE SMTP: {err}", None)
        return
    if not record.name.startswith("_25._tcp."):
        report(f"{record.name}: an SMTP TLSA record is published at _25._tcp.<mx host> (RFC 7672 §2.2.3)", None)


def _target_not_ip(record: Record, report: ReportViolation) -> None:
    for problem in conflicts([record], kinds=("mx-target", "cname-target")):
        report(problem, None)


def _not_proxied(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not dns_resources.is_cloudflare(args.resource_type):
        return
    if args.props.get("proxied") is True:
        report(
            f"{args.props.get('name')} {args.props.get('type')}: mail records must be DNS-only "
            f"(proxied: false); Cloudflare's proxy carries HTTP, not SMTP, and hides the real address",
            None,
        )


def _mx_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    records = dns_resources.parsable_records(args.resource_type, args.props)
    if not any(r.type == "MX" for r in records) or args.opts.protect:
        return
    if allow_delete(args.get_config(), _plan_or_none()):
        return
    mx = next(r for r in records if r.type == "MX")
    report(
        f"{mx.name} MX must be registered with protect=True so that no change can delete it; "
        f"set mailstack:dns.allowDelete: true (or the policy config allowDelete) to allow it",
        None,
    )


def _plan_or_none() -> Plan | None:
    try:
        return declared_plan()
    except MailstackError:
        return None


# -- stack policies ---------------------------------------------------------------------


def _by_record(found: Iterable[StackRecord]) -> dict[Record, str]:
    return {item.record: item.urn for item in found}


def _spf_single(args: StackValidationArgs, report: ReportViolation) -> None:
    found = stack_records(args.resources)
    by_name: dict[str, list[StackRecord]] = defaultdict(list)
    for item in found:
        by_name[item.record.name].append(item)
    for name, items in sorted(by_name.items()):
        for problem in conflicts([i.record for i in items], kinds=("spf-count",)):
            spf_urns = [i.urn for i in items if i.record.type == "TXT" and spf.is_spf(i.record.content)]
            report(problem, spf_urns[-1] if spf_urns else None)


def _cname_exclusive(args: StackValidationArgs, report: ReportViolation) -> None:
    found = stack_records(args.resources)
    urns = _by_record(found)
    for problem in conflicts([i.record for i in found], kinds=("cname-exclusive",)):
        name = problem.split(" ", 1)[0]
        cname = next((urns[r] for r in urns if r.name == name and r.type == "CNAME"), None)
        report(problem, cname)


def _domains_authenticated(args: StackValidationArgs, report: ReportViolation) -> None:
    try:
        declared = declared_plan()
    except MailstackError as err:
        report(f"the stack's mailstack config is invalid: {err}", None)
        return
    if declared is None:
        args.not_applicable("the stack's mailstack: config is not visible to the policy pack")
        return
    found = [i.record for i in stack_records(args.resources)]
    sending = bool(declared.stack.outbound)
    for domain in declared.stack.domains:
        spf_names = [r.name for r in found if r.type == "TXT" and (r.content == UNKNOWN or spf.is_spf(r.content))]
        if domain not in spf_names:
            report(f"{domain} has no SPF record (RFC 7208): receivers cannot tell who may send for it", None)
        dmarc_name = dmarc.record_name(domain)
        if not any(r.name == dmarc_name and r.type == "TXT" for r in found):
            report(f"{domain} has no DMARC record at {dmarc_name} (RFC 7489)", None)
        if sending and not any(
            protection.mail_purpose(r) == "dkim" and dkim.key_domain(r.name) == domain for r in found
        ):
            report(f"{domain} sends mail but has no DKIM record at <selector>._domainkey.{domain} (RFC 6376)", None)


def _identity(record: Record) -> tuple[str, str, str]:
    """What a deletion is about: MX by target (another MX host is a deletion of the old
    one), any other record by name and type (a new value is an update, not a deletion)."""
    return (record.name, record.type, record.content if record.type == "MX" else "")


def _planned_records_kept(args: StackValidationArgs, report: ReportViolation) -> None:
    config = args.get_config()
    try:
        declared = declared_plan()
        previous = previous_records(config)
    except MailstackError as err:
        report(str(err), None)
        return
    if allow_delete(config, declared):
        return
    if previous is not None:
        source, expected = "the previous deployment", previous
    elif declared is not None:
        source, expected = "the record plan", list(declared.records)
    else:
        args.not_applicable("neither previous records nor the stack's mailstack: config are visible")
        return
    present = {_identity(i.record) for i in stack_records(args.resources)}
    for record in sorted(set(expected)):
        if _identity(record) not in present:
            shown = f"{record.priority} {record.content}" if record.type == "MX" else record.content
            report(
                f"{record.name} {record.type} {shown[:60]!r} is in {source} but this change deletes it; "
                f"set mailstack:dns.allowDelete: true for a change that removes planned mail records",
                None,
            )


def all_policies() -> list[Policy]:
    """Every policy of the pack, with its default enforcement level."""
    resource = [
        ("record-values-parse", "RFC 2136 record values are valid rdata.", _values_parse, MANDATORY),
        ("txt-cloudflare-form", "TXT content is quoted and split into strings of at most 255 bytes.", _txt_cloudflare_form, MANDATORY),
        ("spf-valid", "SPF parses, needs at most 10 DNS lookups and is at most 512 bytes.", _resource_check(_spf_valid), MANDATORY),
        ("spf-size-advised", "SPF is at most 450 bytes.", _resource_check(_spf_size_advised), ADVISORY),
        ("dkim-key-valid", "DKIM key records parse and hold a key of at least 1024 bits.", _resource_check(_dkim_key_valid), MANDATORY),
        ("dkim-key-size-advised", "DKIM RSA keys have at least 2048 bits.", _resource_check(_dkim_key_size_advised), ADVISORY),
        ("dmarc-valid", "DMARC records parse, every tag value is valid and no tag RFC 9989 removed (pct, rf, ri) is used.", _resource_check(_dmarc_valid), MANDATORY),
        ("tlsa-valid", "TLSA records use DANE-EE/DANE-TA with a well-formed digest at _25._tcp.<host> (RFC 7672).", _resource_check(_tlsa_valid), MANDATORY),
        ("mail-target-not-ip", "MX and CNAME targets are host names, never IP addresses.", _resource_check(_target_not_ip), MANDATORY),
        ("mail-records-not-proxied", "Mail records are DNS-only, never proxied.", _not_proxied, MANDATORY),
    ]
    policies: list[Policy] = [
        ResourceValidationPolicy(name=name, description=text, validate=check, enforcement_level=level)
        for name, text, check, level in resource
    ]
    policies.append(
        ResourceValidationPolicy(
            name="mx-protected",
            description="MX records are protected from deletion unless allowDelete is set.",
            validate=_mx_protected,
            enforcement_level=MANDATORY,
            config_schema=PolicyConfigSchema(properties={"allowDelete": {"type": "boolean"}}),
        )
    )
    stack = [
        ("spf-single-per-name", "At most one SPF record per name (RFC 7208 §3.2).", _spf_single, None),
        ("cname-exclusive", "No name has a CNAME beside other records (RFC 1034 §3.6.2).", _cname_exclusive, None),
        ("domains-authenticated", "Every domain has SPF and DMARC, and DKIM when it sends.", _domains_authenticated, None),
        ("planned-records-kept", "MX and planned records are not deleted unless allowDelete is set.", _planned_records_kept, _DELETE_SCHEMA),
    ]
    policies += [
        StackValidationPolicy(name=name, description=text, validate=check, enforcement_level=MANDATORY, config_schema=schema)
        for name, text, check, schema in stack
    ]
    return policies


def policy(name: str) -> Policy:
    """One policy by its name (tests, and the config-file check)."""
    for item in all_policies():
        if item.name == name:
            return item
    raise KeyError(name)


def names_of_policies() -> list[str]:
    """The policy ids, as the policy config file names them."""
    return [p.name for p in all_policies()]


__all__ = ["PACK_NAME", "all_policies", "names_of_policies", "policy"]
