"""The change calculator (``mailstack.plan.changes``), pure: planned + live + owned → decisions.

Every case a real zone brings: names shared with records mailstack does not own (apex
TXT with verification tokens, MX with a foreign host), exclusive roles (one SPF, one
DMARC, one key per selector, a null MX, a CNAME), what mailstack owned before, declared
adoptions, protected deletions and TTLs of shared sets. A property test applies the
decided writes to the live records and checks the result: every planned record there,
every foreign record untouched, nothing of an exclusive role twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from mailstack.core.record import Record
from mailstack.plan import changes, cloudflare
from mailstack.plan.changes import Action, ChangeSet, calculate, identity
from mailstack.rules import coexistence

APEX = "acme.test"
TOKENS = [Record(APEX, "TXT", "google-site-verification=abc", 3600), Record(APEX, "TXT", "MS=ms123", 3600)]
SPF = Record(APEX, "TXT", "v=spf1 ip4:192.0.2.10 -all", 300)
OLD_SPF = Record(APEX, "TXT", "v=spf1 include:_spf.google.com ~all", 3600)
MX = Record(APEX, "MX", "mx1.acme.test", 300, 10)
DMARC = Record(f"_dmarc.{APEX}", "TXT", "v=DMARC1; p=reject", 300)
KEY = f"lab._domainkey.{APEX}"


def actions(decided: ChangeSet) -> list[tuple[str, str, str, str]]:
    return [(c.action.value, c.name, c.type, (c.planned or c.live).value if (c.planned or c.live) else "") for c in decided.changes]


def of(decided: ChangeSet, action: Action) -> list[changes.Change]:
    return list(decided.of(action))


def live_at(*records: Record) -> dict[str, list[Record]]:
    found: dict[str, list[Record]] = {}
    for record in records:
        found.setdefault(record.name, []).append(record)
    return found


def apply_to(live: Mapping[str, Sequence[Record]], decided: ChangeSet) -> list[Record]:
    """What the zone holds after the writes (no TTLs: those are the server's)."""
    assert not decided.conflicts
    result = [identity(r) for records in live.values() for r in records]
    for change in decided.writes:
        if change.action in (Action.DELETE, Action.UPDATE):
            assert change.live is not None
            result.remove(identity(change.live))
        if change.action in (Action.CREATE, Action.UPDATE):
            assert change.planned is not None
            result.append(identity(change.planned))
    return [Record(n, t, c, 0, p) for n, t, c, p in result]


# -- names shared with records mailstack does not own -------------------------------------


def test_spf_joins_an_apex_txt_set_of_verification_tokens_without_touching_them() -> None:
    decided = calculate([SPF, MX, DMARC], live_at(*TOKENS))
    assert actions(decided) == [
        ("create", "_dmarc.acme.test", "TXT", "v=DMARC1; p=reject"),
        ("create", APEX, "MX", "10 mx1.acme.test"),
        ("create", APEX, "TXT", SPF.content),
        ("unmanaged", APEX, "TXT", "MS=ms123"),
        ("unmanaged", APEX, "TXT", "google-site-verification=abc"),
    ]
    [create] = [c for c in of(decided, Action.CREATE) if (c.name, c.type) == (APEX, "TXT")]
    assert create.ttl == 3600 and "TTL 3600 of the existing set kept" in create.note  # the tokens keep their TTL
    assert of(decided, Action.CREATE)[1].ttl == 300  # a set of mailstack's alone takes the planned TTL
    after = apply_to(live_at(*TOKENS), decided)
    assert {identity(t) for t in TOKENS} <= {identity(r) for r in after}


def test_a_foreign_mx_coexists_and_a_null_mx_does_not() -> None:
    foreign = Record(APEX, "MX", "backup.example.net", 3600, 50)
    decided = calculate([MX], live_at(foreign))
    assert actions(decided) == [("create", APEX, "MX", "10 mx1.acme.test"), ("unmanaged", APEX, "MX", "50 backup.example.net")]
    assert "receives mail for acme.test too" in of(decided, Action.UNMANAGED)[0].note
    null = Record(APEX, "MX", ".", 300, 0)
    assert [c.action for c in calculate([null], live_at(foreign)).changes] == [Action.CONFLICT]
    conflict = calculate([MX], live_at(null)).conflicts[0]
    assert conflict.live == null and "a null MX stands alone (RFC 7505 §3)" in conflict.note


def test_other_types_at_a_shared_name_are_unmanaged() -> None:
    web = Record(APEX, "A", "192.0.2.80", 1)
    caa = Record(APEX, "CAA", '0 issue "letsencrypt.org"', 1)
    decided = calculate([SPF], live_at(web, caa, *TOKENS))
    assert [c.action for c in decided.changes].count(Action.UNMANAGED) == 4 and decided.counts()["create"] == 1


# -- exclusive roles -----------------------------------------------------------------------


def test_a_foreign_spf_where_one_is_planned_is_a_conflict_naming_it_and_both_ways_out() -> None:
    decided = calculate([SPF, DMARC], live_at(OLD_SPF, *TOKENS))
    [conflict] = decided.conflicts
    assert (conflict.planned, conflict.live) == (SPF, OLD_SPF)
    assert "acme.test TXT 'v=spf1 include:_spf.google.com ~all' is not mailstack's" in conflict.note
    assert "one SPF record per name (RFC 7208 §3.2)" in conflict.note
    assert "mailstack:dns.adopt {txt-acme.test: 'v=spf1 include:_spf.google.com ~all'}" in conflict.note
    assert "or remove it from the zone" in conflict.note
    assert not any(c.action is Action.CREATE and c.type == "TXT" and c.name == APEX for c in decided.changes)


def test_a_second_spf_beside_mailstacks_own_is_a_conflict() -> None:
    decided = calculate([SPF], live_at(SPF, OLD_SPF), owned=[SPF])
    assert [c.action for c in decided.changes] == [Action.CONFLICT, Action.SAME]


def test_an_spf_mailstack_wrote_before_is_updated_even_when_edited_by_hand() -> None:
    old_ours = Record(APEX, "TXT", "v=spf1 a -all", 3600)
    edited = Record(APEX, "TXT", "v=spf1 a mx -all", 3600)
    for live in (old_ours, edited):
        decided = calculate([SPF], live_at(live, *TOKENS), owned=[old_ours])
        [update] = of(decided, Action.UPDATE)
        assert (update.live, update.planned, update.ttl) == (live, SPF, 3600)
        assert sorted(r.content for r in apply_to(live_at(live, *TOKENS), decided)) == sorted([SPF.content, *(t.content for t in TOKENS)])


def test_dropping_an_spf_deletes_it_only_while_it_is_exactly_what_mailstack_wrote() -> None:
    ours = Record(APEX, "TXT", "v=spf1 a -all", 300)
    decided = calculate([MX], live_at(ours), owned=[ours])
    assert [c.action for c in decided.changes if c.type == "TXT"] == [Action.DELETE]
    edited = Record(APEX, "TXT", "v=spf1 a mx -all", 300)
    [left] = [c for c in calculate([MX], live_at(edited), owned=[ours]).changes if c.type == "TXT"]
    assert left.action is Action.UNMANAGED and "changed outside mailstack" in left.note


def test_a_declared_adoption_replaces_exactly_that_value() -> None:
    adopt = {SPF.key: OLD_SPF.content}
    decided = calculate([SPF], live_at(OLD_SPF, *TOKENS), adopt=adopt)
    [update] = of(decided, Action.UPDATE)
    assert update.live == OLD_SPF and not decided.conflicts
    assert calculate([SPF], live_at(OLD_SPF), adopt={SPF.key: "v=spf1 -all"}).conflicts, "another value is not adopted"
    migrated = Record(APEX, "MX", "old-mail.example.net", 3600, 10)
    decided = calculate([MX], live_at(migrated), adopt={MX.key: "10 old-mail.example.net."})
    assert [c.action for c in decided.changes] == [Action.UPDATE]


def test_dmarc_and_a_dkim_selector_hold_one_record_each() -> None:
    foreign_dmarc = Record(DMARC.name, "TXT", "v=DMARC1; p=none", 3600)
    assert calculate([DMARC], live_at(foreign_dmarc)).conflicts[0].live == foreign_dmarc
    other = Record(DMARC.name, "TXT", "some note", 3600)
    assert [c.action for c in calculate([DMARC], live_at(other)).changes] == [Action.CREATE, Action.UNMANAGED]
    planned_key = Record(KEY, "TXT", "v=DKIM1; k=rsa; p=MIIBmine", 300)
    foreign_key = Record(KEY, "TXT", "v=DKIM1; k=rsa; p=MIIBtheirs", 300)
    assert "one key per DKIM selector" in calculate([planned_key], live_at(foreign_key)).conflicts[0].note


def test_a_key_not_known_yet_conflicts_with_a_foreign_key_and_keeps_its_own() -> None:
    pending = Record(KEY, "TXT", "v=DKIM1; k=rsa; p=<generated-by-pulumi>", 300, needs_gateway_key=True)
    live_key = Record(KEY, "TXT", "v=DKIM1; k=rsa; p=MIIBlive", 300)
    [conflict] = calculate([pending], live_at(live_key)).conflicts
    assert "--dkim-public-key or --owned" in conflict.note
    [same] = calculate([pending], live_at(live_key), owned=[Record(KEY, "TXT", "v=DKIM1; k=rsa; p=MIIBold", 300)]).changes
    assert same.action is Action.SAME and "not compared" in same.note
    assert [c.action for c in calculate([pending], {}).changes] == [Action.CREATE]


# -- CNAMEs own their name -----------------------------------------------------------------


def test_a_foreign_cname_blocks_every_record_planned_at_its_name() -> None:
    cname = Record(f"mail.{APEX}", "CNAME", "web.example.net", 300)
    planned = [Record(cname.name, "MX", "mx1.acme.test", 300, 10), Record(cname.name, "TXT", "v=spf1 -all", 300)]
    decided = calculate(planned, live_at(cname))
    assert [c.action for c in decided.changes] == [Action.CONFLICT, Action.CONFLICT]
    assert all("is a CNAME to web.example.net" in c.note and "remove the CNAME" in c.note for c in decided.conflicts)


def test_a_planned_cname_needs_its_name_free_of_foreign_records() -> None:
    cname = Record(f"odoo._domainkey.{APEX}", "CNAME", "odoo._domainkey.odoo.com", 300)
    foreign = Record(cname.name, "TXT", "v=DKIM1; p=MIIBold", 300)
    assert "holds TXT" in calculate([cname], live_at(foreign)).conflicts[0].note
    decided = calculate([cname], live_at(foreign), owned=[foreign])
    assert sorted(c.action.value for c in decided.changes) == ["create", "delete"]
    assert [c.action for c in calculate([cname], live_at(cname)).changes] == [Action.ADOPT]
    moved = Record(cname.name, "CNAME", "elsewhere.example.net", 300)
    assert [c.action for c in calculate([cname], live_at(moved), owned=[moved]).changes] == [Action.UPDATE]
    assert calculate([cname], live_at(moved)).conflicts


# -- ownership, deletion and TTLs ----------------------------------------------------------


def test_identical_records_are_adopted_and_then_same() -> None:
    assert [c.action for c in calculate([SPF], live_at(SPF)).changes] == [Action.ADOPT]
    assert [c.action for c in calculate([SPF], live_at(SPF), owned=[SPF]).changes] == [Action.SAME]
    assert not calculate([SPF], live_at(SPF)).changed


def test_deleting_the_last_mail_critical_record_needs_allow_delete() -> None:
    second = Record(APEX, "MX", "mx2.acme.test", 300, 20)
    refused = calculate([], live_at(MX), owned=[MX], allow_delete=False)
    assert "needs mailstack:dns.allowDelete: true" in refused.conflicts[0].note
    assert [c.action for c in calculate([], live_at(MX), owned=[MX], allow_delete=True).changes] == [Action.DELETE]
    shrunk = calculate([MX], live_at(MX, second), owned=[MX, second], allow_delete=False)
    assert [c.action for c in shrunk.changes] == [Action.DELETE, Action.SAME], "an MX set may lose a host"
    gone = calculate([], {}, owned=[MX], allow_delete=False)
    assert gone.changes == () and not gone.changed, "already gone is nothing to do"


def test_ttl_changes_only_where_the_set_is_mailstacks_alone() -> None:
    stale = Record(APEX, "MX", MX.content, 3600, 10)
    [update] = calculate([MX], live_at(stale), owned=[stale]).changes
    assert update.action is Action.UPDATE and update.ttl == 300 and "TTL 3600 → 300" in update.note
    assert [c.action for c in calculate([MX], live_at(stale), owned=[stale], compare_ttl=False).changes] == [Action.SAME]
    shared = Record(APEX, "TXT", SPF.content, 3600)
    assert [c.action for c in calculate([SPF], live_at(shared, *TOKENS), owned=[shared]).changes][0] is Action.SAME


def test_decisions_are_sorted_and_counted() -> None:
    decided = calculate([DMARC, MX, SPF], live_at(OLD_SPF, *TOKENS))
    assert [c.name for c in decided.changes] == sorted(c.name for c in decided.changes)
    assert decided.counts() == {"create": 2, "adopt": 0, "same": 0, "update": 0, "delete": 0, "conflict": 1, "unmanaged": 2}
    assert set(decided.owned_after()) == {DMARC, MX}


def test_cloudflare_refuses_twins_unless_adopted_by_id() -> None:
    decided = calculate([SPF, MX], live_at(SPF))
    refined = cloudflare.refine(decided, {})
    [conflict] = refined.conflicts
    assert "refuses to create its twin" in conflict.note and "mailstack adopt" in conflict.note
    ids = {SPF.key: "0" * 32 + "/" + "1" * 32}
    assert not cloudflare.refine(decided, ids).conflicts
    old = cloudflare.refine(calculate([SPF], live_at(OLD_SPF)), ids)
    assert [c.action for c in old.changes] == [Action.UPDATE] and "then updated" in old.changes[0].note


# -- the property: applied writes leave foreign records alone --------------------------------

_labels = st.sampled_from(["acme.test", "www.acme.test", "_dmarc.acme.test", "s._domainkey.acme.test", "mail.acme.test"])
_foreign = st.one_of(
    st.builds(lambda n, t: Record(n, "TXT", f"token={t}", 3600), _labels, st.text("abcdef0123", min_size=1, max_size=6)),
    st.builds(lambda n, h, p: Record(n, "MX", f"{h}.example.net", 3600, p), _labels, st.sampled_from(["a", "b", "c"]), st.integers(1, 50)),
    st.builds(lambda n: Record(n, "A", "192.0.2.80", 3600), _labels),
)
_planned = st.lists(st.sampled_from([
    SPF, MX, DMARC, Record("mail.acme.test", "MX", "mx1.acme.test", 300, 10), Record("s._domainkey.acme.test", "TXT", "v=DKIM1; p=MIIBx", 300),
    Record("www.acme.test", "TXT", "v=spf1 -all", 300),
]), unique=True)


@settings(max_examples=200, deadline=None)
@given(planned=_planned, foreign=st.lists(_foreign, max_size=8, unique_by=identity), before=_planned)
def test_applied_writes_bring_the_plan_and_never_touch_foreign_records(planned: list[Record], foreign: list[Record], before: list[Record]) -> None:
    # what mailstack wrote on an earlier run (``before``) is live and owned
    live = live_at(*foreign, *[b for b in before if identity(b) not in {identity(f) for f in foreign}])
    decided = calculate(planned, live, owned=before)
    if decided.conflicts:
        for conflict in decided.conflicts:
            assert conflict.live is not None and identity(conflict.live) in {identity(f) for f in foreign}
        return
    after = {identity(r) for r in apply_to(live, decided)}
    assert {identity(p) for p in planned} <= after
    assert {identity(f) for f in foreign} <= after, "a foreign record was removed"
    by_role: dict[tuple[str, str], int] = {}
    for name, rdtype, content, priority in after:
        role = coexistence.role(Record(name, rdtype, content, 0, priority))
        if coexistence.exclusive(role) and role != "cname":
            by_role[(name, role)] = by_role.get((name, role), 0) + 1
    assert all(n == 1 for n in by_role.values()), by_role
    stale = {identity(b) for b in before} - {identity(p) for p in planned} - {identity(f) for f in foreign}
    assert not stale & after, "a record mailstack owned and no longer plans was kept"
