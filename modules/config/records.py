"""The sections that set record tags: ``dkim`` (the gateway's selector and key size,
and the selector a rotation moves away from),
``spf`` (the closing ``all``), ``dmarc`` (policy and reports), ``mtaSts`` and
``tlsRpt``. Values are checked with the same rule modules that build the records."""

from __future__ import annotations

from typing import Any

from mailstack.config import kinds
from mailstack.config.reader import ConfigReader, Path
from mailstack.core.model import Dkim, Dmarc, Inbound, InboundMode, MtaSts, Spf, TlsRpt
from mailstack.rules import dkim, dkim_rotation, dmarc, limits, mta_sts, spf


def read_dkim(reader: ConfigReader, value: Any, names: tuple[str, ...] = ()) -> Dkim | None:
    """``names``: every name the key is published under (``<selector>._domainkey.<name>``
    must be a DNS name of at most 253 characters for each)."""
    path: Path = ("dkim",)
    data = reader.mapping(value, path, ("selector", "bits", "previous", "retireMargin"))
    if data is None:
        return None
    selector = "mailstack"
    if data.get("selector") is not None:
        selector = reader.convert(data["selector"], (*path, "selector"), kinds.label) or selector
        longest = max(names, key=len, default=None)
        problem = limits.dkim_name_problem(selector, longest) if longest else None
        if problem:
            reader.fail((*path, "selector"), problem)
    bits = reader.integer(data.get("bits"), (*path, "bits"), dkim.MIN_RSA_BITS, max(dkim.RSA_SIZES), default=dkim.ADVISED_RSA_BITS)
    if bits is not None and bits not in dkim.RSA_SIZES:
        sizes = ", ".join(str(size) for size in dkim.RSA_SIZES)
        reader.fail((*path, "bits"), f"{bits} is not one of {sizes} (RFC 8301: at least {dkim.MIN_RSA_BITS})")
    previous = _previous_selector(reader, data.get("previous"), selector, names)
    margin = reader.integer(data.get("retireMargin"), (*path, "retireMargin"), 0, dkim_rotation.MAX_MARGIN, default=dkim_rotation.DEFAULT_MARGIN)
    return Dkim(selector, bits or 2048, previous, dkim_rotation.DEFAULT_MARGIN if margin is None else margin)


def _previous_selector(reader: ConfigReader, value: Any, selector: str, names: tuple[str, ...]) -> str | None:
    """``dkim.previous``: the selector a rotation moves away from (docs/gateway.md)."""
    path: Path = ("dkim", "previous")
    if value is None:
        return None
    previous = reader.convert(value, path, kinds.label)
    if previous is None:
        return None
    if previous == selector:
        reader.fail(path, f"is the same selector as dkim.selector ({selector}): a rotation needs a new selector")
        return None
    longest = max(names, key=len, default=None)
    problem = limits.dkim_name_problem(previous, longest) if longest else None
    if problem:
        reader.fail(path, problem)
        return None
    return previous


def read_spf(reader: ConfigReader, value: Any) -> Spf | None:
    data = reader.mapping(value, ("spf",), ("all",))
    if data is None:
        return None
    all_term = reader.choice(data.get("all"), ("spf", "all"), spf.ALL_QUALIFIERS, default="~all")
    return Spf(all_term or "~all")


def _uris(reader: ConfigReader, value: Any, path: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    uris: list[str] = []
    for index, item in enumerate(reader.sequence(value, path, limits.REPORT_URIS, "report URIs") or []):
        uri = reader.convert(item, (*path, index), dmarc.check_uri)
        if uri:
            uris.append(uri)
    return tuple(uris)


def read_dmarc(reader: ConfigReader, value: Any) -> Dmarc | None:
    path: Path = ("dmarc",)
    data = reader.mapping(value, path, ("policy", "subdomainPolicy", "nonexistentPolicy", "testMode", "rua", "ruf", "adkim", "aspf", "pct", "fo"))
    if data is None:
        return None
    policy = reader.choice(data.get("policy"), (*path, "policy"), dmarc.POLICIES, default="none")
    sp = reader.choice(data.get("subdomainPolicy"), (*path, "subdomainPolicy"), dmarc.POLICIES)
    np = reader.choice(data.get("nonexistentPolicy"), (*path, "nonexistentPolicy"), dmarc.POLICIES)
    adkim = reader.choice(data.get("adkim"), (*path, "adkim"), dmarc.ALIGNMENTS, default="r")
    aspf = reader.choice(data.get("aspf"), (*path, "aspf"), dmarc.ALIGNMENTS, default="r")
    testing = reader.boolean(data.get("testMode"), (*path, "testMode"))
    if data.get("pct") is not None:
        # RFC 9989 removed pct: receivers ignore it, so publishing it would promise a
        # partial policy nobody applies. Named, so an old stack gets told what to write.
        reader.fail((*path, "pct"), f"was removed by RFC 9989 (DMARCbis) and is not published: {dmarc.REMOVED_TAGS['pct']} "
                    "(mailstack:dmarc.testMode: true)")
    fo = None
    if data.get("fo") is not None:
        fo = reader.convert(data["fo"] if isinstance(data["fo"], str) else str(data["fo"])[:20], (*path, "fo"), dmarc.check_fo)
    rua = _uris(reader, data.get("rua"), (*path, "rua"))
    ruf = _uris(reader, data.get("ruf"), (*path, "ruf"))
    if policy is None or adkim is None or aspf is None:
        return None
    options = Dmarc(policy, sp, rua, ruf, adkim, aspf, fo, testing=bool(testing), nonexistent_policy=np)
    try:
        record = dmarc.build(policy, subdomain_policy=sp, rua=rua, ruf=ruf, adkim=adkim, aspf=aspf, fo=fo, testing=bool(testing), nonexistent_policy=np)
    except dmarc.DmarcError:
        return options  # a tag already reported at its key
    problem = limits.txt_problem(record, "DMARC")
    if problem:
        reader.fail((*path, "ruf" if len(",".join(ruf)) > len(",".join(rua)) else "rua"), problem)
        return None
    return options


def read_mta_sts(reader: ConfigReader, value: Any, inbound: Inbound | None, has_gateways: bool = False) -> MtaSts | None:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"  # the Pulumi engine passes booleans as strings
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    path: Path = ("mtaSts",)
    data = reader.mapping(value, path, ("mode", "maxAge", "serve"))
    if data is None:
        return None
    mode = reader.choice(data.get("mode"), (*path, "mode"), mta_sts.MODES, default="testing")
    max_age = reader.integer(data.get("maxAge"), (*path, "maxAge"), 86400, mta_sts.MAX_AGE_LIMIT, default=604800)
    if inbound and inbound.mode in (InboundMode.NONE,) :
        reader.fail(path, "MTA-STS needs an MX: inbound.mode is none")
    elif inbound and inbound.subdomain:
        # The _mta-sts record and the policy host belong to the domain whose MX the
        # policy lists; with a subdomain that is <subdomain>.<domain>, which mailstack
        # does not publish a policy for (and Odoo's host cannot serve one).
        reader.fail(path, f"MTA-STS is published for the domain itself, but inbound mail uses the subdomain {inbound.subdomain}; remove mtaSts or inbound.subdomain")
    serve = reader.choice(data.get("serve"), (*path, "serve"), mta_sts.SERVERS, default="gateway" if has_gateways else "external")
    if serve == "gateway" and not has_gateways and not reader.has_error(("gateways",)):
        reader.fail((*path, "serve"), "gateway needs mailstack:gateways (they serve the policy with nginx); without gateways use external and serve it elsewhere")
    if mode is None or max_age is None or serve is None:
        return None
    return MtaSts(mode, max_age, serve)


def read_tls_rpt(reader: ConfigReader, value: Any) -> TlsRpt | None:
    if value is None:
        return None
    path: Path = ("tlsRpt",)
    data = reader.mapping(value, path, ("rua",))
    if data is None:
        return None
    rua = _uris(reader, data.get("rua"), (*path, "rua"))
    if not rua:
        reader.fail((*path, "rua"), "needs at least one mailto: or https: URI")
        return None
    problem = limits.txt_problem(mta_sts.tlsrpt_value(rua), "TLS-RPT")
    if problem:
        reader.fail((*path, "rua"), problem)
        return None
    return TlsRpt(rua)
