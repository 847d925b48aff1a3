"""Value conversion shared by the builders, with diagnostics instead of exceptions.

``Ctx`` collects diagnostics; every ``*_arg`` helper returns ``None`` after
reporting when the value is missing or invalid, so a builder simply keeps the
default and carries on: one bad line never hides the next one.
"""

from __future__ import annotations

import difflib
import ipaddress
from typing import Iterable

from .model import Diagnostic, Where
from .parser import Stmt

BOOL_WORDS = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}


class Ctx:
    """Diagnostic sink plus typed accessors for statement arguments."""

    def __init__(self, diags: list[Diagnostic]):
        self.diags = diags
        self.rule_numbering = None  # build_rules.RuleNumbering of this load (automatic rule preferences)

    # ---------------------------------------------------------------- reporting

    def error(self, where: Where, code: str, msg: str) -> None:
        self.diags.append(Diagnostic(where.file, where.line, "error", code, msg))

    def warning(self, where: Where, code: str, msg: str) -> None:
        self.diags.append(Diagnostic(where.file, where.line, "warning", code, msg))

    def unknown(self, st: Stmt, known: Iterable[str], context: str) -> None:
        """Warn about an unknown keyword or block, suggesting the closest known one."""
        what = "block" if st.block is not None else "keyword"
        hint = difflib.get_close_matches(st.name, sorted(known), n=1, cutoff=0.75)
        suffix = f"; did you mean '{hint[0]}'?" if hint else ""
        self.warning(st.where, f"unknown-{what}", f"unknown {what} '{st.name}' in {context} (ignored){suffix}")

    # ---------------------------------------------------------------- shape checks

    def need(self, st: Stmt, n: int = 1, what: str = "a parameter") -> bool:
        if len(st.args) >= n:
            return True
        self.error(st.where, "missing-parameter", f"'{st.name}' is missing {what}")
        return False

    def block(self, st: Stmt) -> list[Stmt]:
        """The statement's block; a keyword that needs one but has none is an error."""
        if st.block is None:
            self.error(st.where, "expected-block", f"'{st.name}' must be followed by a {{ ... }} block")
            return []
        return st.block

    def no_block(self, st: Stmt) -> None:
        if st.block is not None:
            self.warning(st.where, "unexpected-block", f"'{st.name}' does not take a block; its block is ignored")

    # ---------------------------------------------------------------- typed values

    def int_arg(self, st: Stmt, lo: int | None = None, hi: int | None = None, i: int = 0,
                what: str | None = None, soft: bool = False) -> int | None:
        if not self.need(st, i + 1):
            return None
        text = st.args[i].text
        try:
            v = int(text, 10)
        except ValueError:
            self.error(st.where, "invalid-number", f"'{st.name}' expects an integer, got '{text}'")
            return None
        return self._range(st, v, lo, hi, what, soft)

    def float_arg(self, st: Stmt, lo: float | None = None, hi: float | None = None, i: int = 0,
                  what: str | None = None, soft: bool = False) -> float | None:
        if not self.need(st, i + 1):
            return None
        text = st.args[i].text
        try:
            v = float(text)
        except ValueError:
            self.error(st.where, "invalid-number", f"'{st.name}' expects a number of seconds, got '{text}'")
            return None
        if v != v or v in (float("inf"), float("-inf")):
            self.error(st.where, "invalid-number", f"'{st.name}' expects a finite number, got '{text}'")
            return None
        return self._range(st, v, lo, hi, what, soft)

    def _range(self, st: Stmt, v, lo, hi, what, soft: bool = False):
        """``v`` if within ``lo..hi``; else an error, or with ``soft`` a warning (the keyword is ignored,
        as keepalived ignores it: its default stays)."""
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{lo:g}..{hi:g}" if hi is not None else f">= {lo:g}"
            msg = f"{what or repr(st.name)} {st.args[0].text if st.args else v} is out of range ({rng})"
            if soft:
                self.warning(st.where, "out-of-range", msg + "; ignored, as keepalived does")
            else:
                self.error(st.where, "out-of-range", msg)
            return None
        return v

    def bool_arg(self, st: Stmt) -> bool:
        """A flag: bare means true; ``on/off/true/false/yes/no`` accepted."""
        if not st.args:
            return True
        word = st.args[0].text.lower()
        if word in BOOL_WORDS:
            return BOOL_WORDS[word]
        self.error(st.where, "invalid-bool", f"'{st.name}' expects on|off|true|false|yes|no, got '{st.args[0].text}'")
        return True

    def word(self, st: Stmt, i: int = 0) -> str | None:
        return st.args[i].text if self.need(st, i + 1) else None

    def choice(self, st: Stmt, choices: Iterable[str], i: int = 0, upper: bool = False) -> str | None:
        w = self.word(st, i)
        if w is None:
            return None
        key = w.upper() if upper else w
        choices = list(choices)
        if key not in choices:
            hint = difflib.get_close_matches(key, choices, n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else ""
            self.error(st.where, "invalid-value", f"'{st.name}' must be one of {'|'.join(choices)}, got '{w}'{extra}")
            return None
        return key

    def ip_arg(self, st: Stmt, i: int = 0, what: str = "an IP address") -> str | None:
        w = self.word(st, i)
        if w is None:
            return None
        if valid_ip(w) is None:
            self.error(st.where, "invalid-address", f"'{st.name}' expects {what}, got '{w}'")
            return None
        return str(valid_ip(w))

    def script_arg(self, st: Stmt) -> tuple[str, ...] | None:
        if not self.need(st, 1, "a command"):
            return None
        argv = split_command(" ".join(t.text for t in st.args))
        if not argv:
            self.error(st.where, "missing-parameter", f"'{st.name}' has an empty command")
            return None
        return argv


    def notify_arg(self, st: Stmt, users: dict) -> tuple[str, ...] | None:
        """``KEYWORD COMMAND [username [groupname]]``: one (usually quoted) command word."""
        if not self.need(st, 1, "a command"):
            return None
        argv = split_command(st.args[0].text)
        if not argv:
            self.error(st.where, "missing-parameter", f"'{st.name}' has an empty command")
            return None
        if len(st.args) > 1:
            users[st.name] = tuple(t.text for t in st.args[1:3])
            if len(st.args) > 3:
                self.warning(st.where, "unexpected-argument",
                             f"'{st.name}' takes COMMAND [username [groupname]]; quote a command with arguments")
        return argv


def split_command(text: str) -> tuple[str, ...]:
    """Split a script command the way keepalived documents it.

    Unquoted whitespace separates arguments; a single- or double-quoted
    section keeps its spaces (the quotes are removed).  No shell is involved.
    """
    out: list[str] = []
    buf: list[str] = []
    have = False
    quote = None
    for c in text:
        if quote:
            if c == quote:
                quote = None
            else:
                buf.append(c)
        elif c in "'\"":
            quote = c
            have = True
        elif c.isspace():
            if buf or have:
                out.append("".join(buf))
            buf, have = [], False
        else:
            buf.append(c)
    if buf or have:
        out.append("".join(buf))
    return tuple(out)


def valid_ip(text: str):
    """``ipaddress`` object for an IPv4/IPv6 literal (IPv6 may carry a %zone), else None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_cidr(text: str):
    """``ip_interface`` for ``ADDR`` or ``ADDR/LEN`` (bare addresses get a host prefix), else None."""
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        return None
