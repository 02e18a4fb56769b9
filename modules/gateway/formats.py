"""What each rendered file format can hold, and the check every template value passes.

The config layer (``mailstack.config.kinds``) already refuses a bad value at its key;
this is the second wall, at the format: a future key, a model built in code, a layout
from the lab — whatever reaches a template is refused here unless its file format can
hold it as one value. A newline in main.cf starts a new parameter (Postfix takes the
last ``smtpd_relay_restrictions``), a space in opendkim.conf or master.cf splits a
value, ``$`` in main.cf and master.cf expands a parameter, ``#`` starts an OpenDKIM
comment, ``:`` separates KeyTable fields, ``%`` and ``$`` are systemd specifiers.

Every ``{{ ... }}`` of every template goes through ``check_value`` with the template's
format (``FORMATS``, by template name): ``CheckEveryValue``, a Jinja extension, wraps
each interpolation at compile time, so no template can forget it. A template without
a format is refused. Each interpolation is one value of its format (in main.cf one
word: no space, no comma); a list is written ``{{ domains | words(", ") }}``, which
checks every element and refuses one holding the separator, so ``relay_domains``
never gains an entry from a value with a comma in it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import jinja2
import jinja2.ext
from jinja2.lexer import Token, TokenStream

from mailstack.core.errors import MailstackError, quote

#: The Jinja filter the extension applies to every interpolated value.
CHECK_FILTER = "_mailstack_checked"
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


class FormatError(MailstackError):
    """A value its file format cannot hold (the message names the template field)."""


def _line(value: str) -> str | None:
    """What no line-based format holds: control characters (line breaks included)."""
    for char in value:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"it contains the control character U+{ord(char):04X}"
    return None


def _trimmed(value: str) -> str | None:
    if value != value.strip():
        return "it has leading or trailing whitespace, which the parser drops"
    return None


def _word(value: str) -> str | None:
    if any(char.isspace() for char in value):
        return "it contains whitespace, which splits it into several values"
    return None


def _chars(value: str, refused: str, why: str) -> str | None:
    found = sorted({char for char in value if char in refused})
    return f"it contains {' '.join(found)} ({why})" if found else None


#: Every character a value we write into Postfix, OpenDKIM, SASL or systemd files is
#: made of: host names, addresses, ports, paths, user names (``[::1]/128``,
#: ``inet:8891@127.0.0.1``, ``[relay.example]:587``). Anything else means a value of
#: the wrong kind reached the template, and is refused before a parser can misread it.
_WORD = re.compile(r"[A-Za-z0-9._/:@\[\]+=-]*")


def _plain(value: str, where: str) -> str | None:
    if _WORD.fullmatch(value):
        return None
    found = sorted({char for char in value if not _WORD.fullmatch(char)})
    return f"it contains {' '.join(found)}, which no value of a {where} holds (letters, digits and . _ / : @ [ ] + = - only)"


def main_cf(value: str) -> str | None:
    """A word of a Postfix main.cf value (or of a comment): no whitespace or comma
    (Postfix splits lists at both), no ``$`` (``$name``/``${name}`` expand other
    parameters)."""
    return (
        _line(value) or _word(value) or _chars(value, ",", "Postfix splits a list at commas")
        or _chars(value, "$", "Postfix expands $parameter references") or _plain(value, "main.cf")
    )


def master_cf(value: str) -> str | None:
    """A word of master.cf (a service field, an ``-o`` value, a pipe argument)."""
    return (
        _line(value) or _word(value)
        or _chars(value, "${}", "Postfix expands $macros; { } group arguments in master.cf")
        or _chars(value, "#", "a line starting with # is a comment: the service would vanish")
        or _plain(value, "master.cf")
    )


def postfix_table(value: str) -> str | None:
    """A key or value of a Postfix lookup table source (transport, recipient maps)."""
    return (
        _line(value) or _word(value)
        or (_chars(value[:1], "#", "a line starting with # is a comment") if value else None)
        or _chars(value, '"', "postmap reads quoted keys and drops a line with an unbalanced quote")
        or _plain(value, "Postfix lookup table")
    )


def opendkim(value: str) -> str | None:
    """A value of opendkim.conf or one of its tables: one ASCII word (DKIM names are
    A-labels, RFC 6376 §3.5; OpenDKIM compares table keys byte for byte), no ``#``
    (OpenDKIM cuts a line at ``#``)."""
    return (
        _line(value) or _word(value) or _chars(value, "#", "OpenDKIM starts a comment at #")
        or (None if value.isascii() else "it is not ASCII: OpenDKIM's names and tables are ASCII")
        or _plain(value, "OpenDKIM file")
    )


def opendkim_keytable(value: str) -> str | None:
    """A KeyTable field: an OpenDKIM word without ``:`` (``domain:selector:key``)."""
    return opendkim(value) or _chars(value, ":,", "KeyTable values are domain:selector:keyfile")


def opendkim_signing(value: str) -> str | None:
    """A SigningTable field (``refile:``: each key is a pattern OpenDKIM compiles to
    a regular expression, ``*`` the only wildcard meant): an OpenDKIM word without
    regular-expression characters."""
    return opendkim(value) or _chars(value, "*?+^$|\\()[]{}", "OpenDKIM compiles SigningTable keys to regular expressions")


_NAME = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


def postfix_regexp(value: str) -> str | None:
    """A value of a Postfix ``regexp:`` table (the submission checks): a host or domain
    name only, which ``regex_words`` writes as a literal (its dots escaped) — nothing
    that could change the pattern or the action text around it."""
    if _line(value) or not _NAME.fullmatch(value):
        return "it is not a host or domain name (letters, digits, hyphens and dots only)"
    return None


def ini(value: str) -> str | None:
    """A value of an INI file read by Python's configparser (mailgate.conf; Odoo's
    odoo.conf, RawConfigParser): one line, no surrounding whitespace; and, like every
    value we write there, one word (Odoo splits ``from_filter`` at commas)."""
    return _line(value) or _trimmed(value) or _word(value) or _chars(value, ",", "Odoo splits lists at commas")


def sasl(value: str) -> str | None:
    """A Cyrus SASL config value (``sasldb_path: ...``) or a word of the shell
    command its comment shows: one word without shell metacharacters."""
    return _line(value) or _word(value) or _chars(value, "'\"`$\\;&|<>(){}*?[]!#~", "a shell would interpret it") or _plain(value, "SASL file")


def systemd_exec(value: str) -> str | None:
    """A word of a systemd ``ExecStart=`` line: no whitespace, quotes, ``\\``, ``;``,
    ``%`` (specifiers) or ``$`` (environment)."""
    return _line(value) or _word(value) or _chars(value, "'\"\\;%$", "systemd parses it in ExecStart=") or _plain(value, "systemd unit")


def postfix_regexp_literal(value: str) -> str | None:
    """A literal in a Postfix regexp table (POSIX ERE between ``/``): a host name whose
    dots the ``regexp_literal`` filter escaped (``acme\\.test``), or a replacement host
    or address (``it-ops@example.org``: no ``$``, which would substitute a group)."""
    problem = _line(value) or _word(value)
    if problem:
        return problem
    if re.fullmatch(r"[A-Za-z0-9._+=-]+@[A-Za-z0-9.-]+", value):
        return None
    if not re.fullmatch(r"(?:[A-Za-z0-9-]|\\\.|\.)+", value):
        return "it is not a host name (letters, digits, - and dots) for a Postfix regexp table"
    return None


def regexp_literal(value: str) -> str:
    """The ``regexp_literal`` filter: a host name with its dots escaped for a regexp."""
    return value.replace(".", "\\.")


def env_file(value: str) -> str | None:
    """A value of a shell-sourced defaults file (``/etc/default/postsrsd``)."""
    return _line(value) or _word(value) or _chars(value, "'\"`$\\;&|<>(){}*?[]!#~", "a shell would interpret it") or _plain(value, "defaults file")


def nginx(value: str) -> str | None:
    """A word of an nginx directive: no ``;`` (ends the directive), braces (open and
    close blocks), ``#`` (a comment), ``$`` (a variable), quotes or backslashes."""
    return (
        _line(value) or _word(value)
        or _chars(value, ";{}#$'\"\\", "nginx ends directives at ;, opens blocks at braces, comments at #, expands $variables")
        or _plain(value, "nginx config")
    )


#: The format of each template, by its name in ``mailstack.templates``.
FORMATS: dict[str, Callable[[str], str | None]] = {
    "postfix/main.cf.j2": main_cf,
    "postfix/master.cf.j2": master_cf,
    "postfix/transport.j2": postfix_table,
    "postfix/relay_recipients.j2": postfix_table,
    "postfix/role_addresses.j2": postfix_table,
    "postfix/submission_senders.j2": postfix_regexp,
    "postfix/submission_header_checks.j2": postfix_regexp,
    "postfix/submission_line_checks.j2": postfix_regexp,
    "postfix/submission_milter_checks.j2": postfix_regexp,
    "postfix/sasl_smtpd.conf.j2": sasl,
    "opendkim/opendkim.conf.j2": opendkim,
    "opendkim/KeyTable.j2": opendkim_keytable,
    "opendkim/SigningTable.j2": opendkim_signing,
    "opendkim/TrustedHosts.j2": opendkim,
    "mailstack/mailgate.conf.j2": ini,
    "odoo/odoo.conf.j2": ini,
    "systemd/opendkim.conf.j2": systemd_exec,
    # the lab's independent receiver (mailstack.lab.receiver)
    "lab/receiver/main.cf.j2": main_cf,
    "lab/receiver/master.cf.j2": master_cf,
    "lab/receiver/mailboxes.j2": postfix_table,
    "lab/receiver/opendkim.conf.j2": opendkim,
    "lab/receiver/opendmarc.conf.j2": opendkim,
    "lab/receiver/unbound.conf.j2": opendkim,
    "lab/receiver/policyd-spf.conf.j2": ini,
    "systemd/mailstack-aliasd.service.j2": systemd_exec,
    "systemd/mailstack-mailgate.service.j2": systemd_exec,
    "mailstack/aliasd.conf.j2": ini,
    "postfix/odoo_redirect.j2": postfix_regexp_literal,
    "postsrsd/postsrsd.j2": env_file,
    "nginx/mta-sts.conf.j2": nginx,
    "lab/nginx.conf.j2": nginx,
}


class Words:
    """A list to write as one value, its elements joined by ``separator``; made by
    the ``words`` filter, checked element by element by ``check_value``."""

    def __init__(self, items: Any, separator: str, escape: Callable[[str], str] | None = None) -> None:
        self.items = list(items)
        self.separator = separator
        #: Applied to each element after it is checked (``regex_words``).
        self.escape = escape


def words(items: Any, separator: str = " ") -> Words:
    """The ``words`` filter: ``{{ relay_domains | words(", ") }}``."""
    return Words(items, separator)


def regex_words(items: Any, separator: str = "|") -> Words:
    """The ``regex_words`` filter: names as alternatives of a POSIX regular expression,
    each matching exactly itself (checked as a name, then its dots escaped):
    ``@({{ signing_domains | regex_words }})$``."""
    return Words(items, separator, escape=lambda name: name.replace(".", "\\."))


@jinja2.pass_context
def check_value(context: jinja2.runtime.Context, value: Any, field: str, line: str) -> str:
    """The text of one interpolated value, or FormatError naming the template, its
    line and the field when the template's format cannot hold it."""
    template = context.name or "<string>"
    check = FORMATS.get(template)
    if check is None:
        raise FormatError(f"template {template} has no file format in mailstack.gateway.formats.FORMATS")
    if isinstance(value, Words):
        texts = [_checked(check, item, f"{field}[{index}]", template, line) for index, item in enumerate(value.items)]
        escape = value.escape
        return value.separator.join(escape(t) if escape else t for t in texts)
    return _checked(check, value, field, template, line)


def _checked(check: Callable[[str], str | None], value: Any, field: str, template: str, line: str) -> str:
    text = value if isinstance(value, str) else str(value)
    problem = check(text)
    if problem:
        raise FormatError(f"{template} line {line}: {field} = {quote(text)} cannot be written there: {problem}")
    return text


class CheckEveryValue(jinja2.ext.Extension):
    """Rewrites every ``{{ expr }}`` into ``{{ (expr) | _mailstack_checked("expr", line) }}``
    while the template compiles."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        for token in stream:
            yield token
            if token.type != "variable_begin":
                continue
            inner: list[Token] = []
            end = token
            for inner_token in stream:
                if inner_token.type == "variable_end":
                    end = inner_token
                    break
                inner.append(inner_token)
            line = token.lineno
            field = _source(inner)
            yield Token(line, "lparen", "(")
            yield from inner
            yield from (
                Token(line, "rparen", ")"), Token(line, "pipe", "|"), Token(line, "name", CHECK_FILTER),
                Token(line, "lparen", "("), Token(line, "string", field), Token(line, "comma", ","),
                Token(line, "string", str(line)), Token(line, "rparen", ")"),
            )
            yield end


def _source(tokens: list[Token]) -> str:
    """An expression's text from its tokens, for messages: ``settings.tls.cert``,
    ``relay_domains|words(', ')``."""
    text = " ".join(repr(t.value) if t.type == "string" else str(t.value) for t in tokens)
    return re.sub(r" ?([.()\[\]|]) ?", r"\1", text).replace(" ,", ",")
