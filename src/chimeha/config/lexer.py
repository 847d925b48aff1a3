"""Lexer for keepalived.conf: physical lines in, logical lines of tokens out.

Theory of operation (following keepalived.conf(5), "DESCRIPTION" and
"ADVANCED CONFIGURATION"): each physical line is processed in this order

1. ``#`` and ``!`` start a comment anywhere outside a quoted string;
2. ``include`` (and ``includer``/``includem``/``includew``/``includeb``/
   ``includea``) lines are detected *before* conditionals and substitution, as
   the manual says; the glob is resolved relative to the including file's
   directory and the included file is lexed recursively;
3. ``@ID`` / ``@^ID`` conditional lines are kept or dropped against the
   config-id;
4. ``$NAME=VALUE`` defines a parameter (a trailing ``\\`` continues the value
   onto following lines: a multiline definition);
5. ``~SEQ(...)`` / ``~SEQx(...)`` / ``~LST(...)`` repeat the rest of the line;
6. ``$NAME`` (followed by whitespace) and ``${NAME}`` are replaced,
   recursively; a multiline definition expands into several lines;
7. the line is split into tokens: whitespace separates words, ``"`` and ``'``
   quote (with shell-like escapes), ``{`` and ``}`` are tokens of their own.

Every token keeps the file and line it came from (for text produced by a
substitution, the line where the substitution happened).  File access goes
through an injectable ``opener`` so the lexer stays testable without a disk.
"""

from __future__ import annotations

import glob as _glob
import os
import random
import re
import stat as _stat
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError
from .model import Diagnostic

MAX_INCLUDE_DEPTH = 32
MAX_SUBST_DEPTH = 64
MAX_EXPANDED_LINES = 200_000
MAX_LINE_CHARS = 65_536
MAX_WORK = 1_000_000  # logical lines processed, counting every expansion step

INCLUDE_KEYWORDS = ("include", "includer", "includem", "includew", "includeb", "includea", "includet")

_DEF_RE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_SUBST_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?:\s+[0-9]+){0,2})\}|\$([A-Za-z_][A-Za-z0-9_]*)(?=\s|$)")
_SEQ_RE = re.compile(r"^~(SEQx?|LST)\(")


@dataclass(frozen=True)
class Token:
    """One word of a config line."""

    text: str
    file: str
    line: int
    quoted: bool = False

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Line:
    """One logical line: its tokens (never empty) and where it started."""

    tokens: tuple[Token, ...]
    file: str
    line: int


class _Reporter:
    def __init__(self, diags: list[Diagnostic]):
        self.diags = diags

    def error(self, file: str, line: int, code: str, msg: str) -> None:
        self.diags.append(Diagnostic(file, line, "error", code, msg))

    def warning(self, file: str, line: int, code: str, msg: str) -> None:
        self.diags.append(Diagnostic(file, line, "warning", code, msg))


def strip_comment(text: str) -> str:
    """Remove a ``#`` or ``!`` comment that starts outside a quoted string."""
    quote = None
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "#!":
            return text[:i]
        i += 1
    return text


_ESCAPES = {"a": "\a", "b": "\b", "E": "\x1b", "e": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _unescape(s: str, i: int) -> tuple[str, int]:
    """Decode the escape starting at ``s[i] == '\\'``; return (text, next index)."""
    if i + 1 >= len(s):
        return "\\", i + 1
    c = s[i + 1]
    if c in _ESCAPES:
        return _ESCAPES[c], i + 2
    if c in "01234567":
        j = i + 1
        while j < len(s) and j < i + 4 and s[j] in "01234567":
            j += 1
        return chr(int(s[i + 1 : j], 8) & 0xFF), j
    if c == "x":
        j = i + 2
        while j < len(s) and s[j] in "0123456789abcdefABCDEF":
            j += 1
        if j == i + 2:
            return "x", i + 2
        return chr(int(s[i + 2 : j], 16) & 0xFF), j
    if c == "c" and i + 2 < len(s):
        return chr(ord(s[i + 2].upper()) ^ 0x40), i + 3
    return c, i + 2


def split_words(text: str, file: str, line: int, rep: _Reporter | None = None) -> list[Token]:
    """Split one comment-free line into tokens (quotes, escapes, braces)."""
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "{}":
            out.append(Token(c, file, line))
            i += 1
            continue
        buf: list[str] = []
        quoted = False
        while i < n:
            c = text[i]
            if c.isspace() or c in "{}":
                break
            if c == "$" and text.startswith("{", i + 1) and "}" in text[i + 2 :]:
                # An undefined ${NAME} stays in the text verbatim, braces included.
                end = text.index("}", i + 2)
                buf.append(text[i : end + 1])
                i = end + 1
                continue
            if c in "\"'":
                quoted = True
                q = c
                i += 1
                while i < n and text[i] != q:
                    if text[i] == "\\":
                        s, i = _unescape(text, i)
                        buf.append(s)
                    else:
                        buf.append(text[i])
                        i += 1
                if i >= n and rep is not None:
                    rep.warning(file, line, "unterminated-quote", f"unterminated {q}...{q} string: closed at end of line")
                i += 1
                continue
            buf.append(c)
            i += 1
        out.append(Token("".join(buf).replace("\x01", "#").replace("\x02", "!"), file, line, quoted))
    return out


class Lexer:
    """Turns a config file (and its includes) into logical lines.

    ``opener(path) -> str`` reads a file (raises OSError); ``globber(pattern)``
    expands an include pattern.  ``config_id`` decides ``@`` lines.
    """

    def __init__(
        self,
        diags: list[Diagnostic],
        *,
        config_id: str | None = None,
        opener: Callable[[str], str] | None = None,
        globber: Callable[[str], list[str]] | None = None,
        rng: random.Random | None = None,
    ):
        self.rep = _Reporter(diags)
        self.config_id = config_id or ""
        self.opener = opener or _read_file
        self.globber = globber or _default_glob
        self.defs: dict[str, list[str]] = {}
        self.lines: list[Line] = []
        self.files: list[str] = []
        self._stack: list[str] = []
        self._rng = rng or random.Random(0)
        self._work = 0
        self._gave_up = False

    # ---------------------------------------------------------------- entry points

    def lex_file(self, path: str, where: tuple[str, int] | None = None) -> bool:
        """Lex ``path`` (appending to ``self.lines``); False if it cannot be read."""
        try:
            text = self.opener(path)
        except NotRegularFile as exc:
            if where is None:
                self.rep.error(path, 0, "not-regular-file", f"cannot read {path}: it is {exc.kind}, not a regular "
                               "non-executable file")
            else:
                self.rep.warning(where[0], where[1], "not-regular-file",
                                 f"{path} is {exc.kind}, not a regular non-executable file: skipped, as keepalived "
                                 "skips it")
            return False
        except (OSError, UnicodeDecodeError, ValueError, ConfigError) as exc:
            file, line = where or (path, 0)
            reason = getattr(exc, "strerror", None) or str(exc)
            self.rep.error(file, line, "unreadable-file", f"cannot read {path}: {reason}")
            return False
        self.lex_text(text, path)
        return True

    def lex_text(self, text: str, filename: str) -> None:
        """Lex ``text`` as if it were the file ``filename``."""
        if len(self._stack) >= MAX_INCLUDE_DEPTH:
            self.rep.error(filename, 0, "include-depth", f"includes nested deeper than {MAX_INCLUDE_DEPTH}")
            return
        self._stack.append(filename)
        self.files.append(filename)
        try:
            self._lex_physical(text.split("\n"), filename)
        finally:
            self._stack.pop()

    # ---------------------------------------------------------------- internals

    def _lex_physical(self, raw: list[str], filename: str) -> None:
        i = 0
        while i < len(raw):
            lineno = i + 1
            text = raw[i].replace("\r", "").replace("\0", "").replace("\x01", "").replace("\x02", "")
            i += 1
            if len(text) > MAX_LINE_CHARS:
                self.rep.error(filename, lineno, "line-too-long", f"line longer than {MAX_LINE_CHARS} characters (ignored)")
                continue
            stripped = strip_comment(text).strip()
            if not stripped:
                continue
            # A definition whose value ends in a backslash continues on the next lines.
            m = _DEF_RE.match(stripped)
            if m and stripped.endswith("\\"):
                value_lines = [m.group(2)[:-1].strip()]
                while i < len(raw):
                    nxt = strip_comment(raw[i].replace("\r", "")).strip()
                    i += 1
                    if nxt.endswith("\\"):
                        value_lines.append(nxt[:-1].strip())
                    else:
                        value_lines.append(nxt)
                        break
                self.defs[m.group(1)] = [v for v in value_lines if v] or [""]
                continue
            self._logical(stripped, filename, lineno, 0)

    def _logical(self, text: str, filename: str, lineno: int, depth: int) -> None:
        self._work += 1
        if self._gave_up:
            return
        if self._work > MAX_WORK or len(text) > MAX_LINE_CHARS:
            self._gave_up = True
            self.rep.error(filename, lineno, "expansion-too-large",
                           "parameter/sequence expansion grows without bound here; the rest of the configuration is ignored")
            return
        if depth > MAX_SUBST_DEPTH:
            self.rep.error(filename, lineno, "substitution-loop", "parameter substitution nested too deeply (a definition refers to itself?)")
            return
        if len(self.lines) > MAX_EXPANDED_LINES:
            if len(self.lines) == MAX_EXPANDED_LINES + 1:
                self.rep.error(filename, lineno, "too-many-lines", f"configuration expands to more than {MAX_EXPANDED_LINES} lines")
                self.lines.append(Line((), filename, lineno))
            return
        first = text.split(None, 1)[0]
        if first in INCLUDE_KEYWORDS:
            self._include(text, filename, lineno)
            return
        if text.startswith("@"):
            parts = text.split(None, 1)
            cond, rest = parts[0], (parts[1].strip() if len(parts) > 1 else "")
            neg = cond.startswith("@^")
            ident = cond[2:] if neg else cond[1:]
            if (ident == self.config_id) == neg:
                return
            if not rest:
                return
            text = rest
        m = _DEF_RE.match(text)
        if m:
            self.defs[m.group(1)] = [m.group(2).strip()] if m.group(2).strip() else [""]
            return
        if text.startswith("~"):
            if self._sequence(text, filename, lineno, depth):
                return
        expanded = self._substitute(text, filename, lineno)
        if expanded is not None:
            for part in expanded:
                part = strip_comment(part).strip()
                if part:
                    self._logical(part, filename, lineno, depth + 1)
            return
        tokens = split_words(text, filename, lineno, self.rep)
        if tokens:
            self.lines.append(Line(tuple(tokens), filename, lineno))

    def _substitute(self, text: str, filename: str, lineno: int) -> list[str] | None:
        """One round of substitution; None when nothing was substituted."""
        if "$" not in text:
            return None
        changed = False
        multi: list[str] | None = None

        def repl(m: re.Match) -> str:
            nonlocal changed, multi
            name = m.group(1) or m.group(3)
            if name == "_PWD":
                changed = True
                return os.path.dirname(os.path.abspath(filename)) if not filename.startswith("<") else "."
            if name == "_INSTANCE":
                changed = True
                return self.config_id
            if name == "_HASH":
                changed = True
                return "\x01"  # becomes '#' only after comment stripping
            if name == "_BANG":
                changed = True
                return "\x02"
            if name == "_RANDOM":
                changed = True
                bounds = (m.group(2) or "").split()
                lo = int(bounds[0]) if bounds else 0
                hi = int(bounds[1]) if len(bounds) > 1 else 32767
                return str(self._rng.randint(min(lo, hi), max(lo, hi)))
            if name not in self.defs:
                return m.group(0)
            changed = True
            value = self.defs[name]
            if len(value) > 1:
                multi = value
                return "\0MULTI\0"
            return value[0]

        out = _SUBST_RE.sub(repl, text)
        if not changed:
            return None
        if multi is not None:
            before, _, after = out.partition("\0MULTI\0")
            lines = list(multi)
            lines[0] = before + lines[0]
            lines[-1] = lines[-1] + after.replace("\0MULTI\0", "")
            return lines
        return [out]

    def _sequence(self, text: str, filename: str, lineno: int, depth: int) -> bool:
        m = _SEQ_RE.match(text)
        if not m:
            return False
        close = text.find(")", m.end())
        if m.group(1) == "LST":
            # Lists may contain {a,b} groups; find the matching ')'.
            level, j = 0, m.end()
            while j < len(text):
                if text[j] == "{":
                    level += 1
                elif text[j] == "}":
                    level -= 1
                elif text[j] == ")" and level == 0:
                    break
                j += 1
            close = j if j < len(text) else -1
        if close < 0:
            self.rep.error(filename, lineno, "bad-sequence", f"~{m.group(1)}( without closing ')'")
            return True
        spec = text[m.end() : close]
        rest = text[close + 1 :].strip()
        try:
            assignments = _expand_spec(m.group(1), spec)
        except ValueError as exc:
            self.rep.error(filename, lineno, "bad-sequence", f"invalid ~{m.group(1)}({spec}): {exc}")
            return True
        if len(assignments) > MAX_EXPANDED_LINES:
            self.rep.error(filename, lineno, "too-many-lines", f"~{m.group(1)} expands to {len(assignments)} lines")
            return True
        saved = {k: self.defs.get(k) for a in assignments[:1] for k in a}
        for assign in assignments:
            for k, v in assign.items():
                self.defs[k] = [v]
            if rest:
                self._logical(rest, filename, lineno, depth + 1)
        for k, v in saved.items():
            if v is None:
                self.defs.pop(k, None)
            else:
                self.defs[k] = v
        return True

    def _include(self, text: str, filename: str, lineno: int) -> None:
        kw, _, raw = text.partition(" ") if " " in text else text.partition("\t")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            raw = raw[1:-1]
        if not raw:
            self.rep.error(filename, lineno, "missing-parameter", f"'{kw}' needs a file name")
            return
        base = os.path.dirname(filename) if not filename.startswith("<") else os.getcwd()
        matches = []
        for pattern in brace_expand(raw):
            if not os.path.isabs(pattern):
                pattern = os.path.join(base, pattern)
            matches.extend(p for p in sorted(self.globber(pattern)) if p not in matches)
        if not matches:
            sev = self.rep.warning if kw in ("include", "includer") else self.rep.error
            sev(filename, lineno, "include-no-match", f"{kw} {raw}: no file matches")
            return
        for path in matches:
            if path in self._stack:
                self.rep.error(filename, lineno, "include-loop", f"{path} includes itself (via {filename})")
                continue
            self.lex_file(path, (filename, lineno))


def brace_expand(pattern: str, limit: int = 1000) -> list[str]:
    """csh-style ``{a,b}`` expansion (nested), as glob(GLOB_BRACE) does for includes."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    level = 0
    parts, last = [], start + 1
    for i in range(start, len(pattern)):
        c = pattern[i]
        if c == "{":
            level += 1
        elif c == "}":
            level -= 1
            if level == 0:
                parts.append(pattern[last:i])
                head, tail = pattern[:start], pattern[i + 1 :]
                out: list[str] = []
                for alt in parts:
                    for x in brace_expand(head + alt + tail, limit):
                        if len(out) < limit:
                            out.append(x)
                return out
        elif c == "," and level == 1:
            parts.append(pattern[last:i])
            last = i + 1
    return [pattern]  # unbalanced: taken literally


def _expand_spec(kind: str, spec: str) -> list[dict[str, str]]:
    if kind in ("SEQ", "SEQx"):
        parts = [p.strip() for p in spec.split(",")]
        if not 2 <= len(parts) <= 4:
            raise ValueError("expected (var, [start, [step,]] end)")
        var = parts[0]
        nums = [int(p, 0) for p in parts[1:]]
        if len(nums) == 1:
            end = nums[0]
            start = 1 if end > 0 else -1
            step = 1 if end >= start else -1
        elif len(nums) == 2:
            start, end = nums
            step = 1 if end >= start else -1
        else:
            start, step, end = nums
        if step == 0:
            raise ValueError("step is 0")
        vals = []
        v = start
        while (v <= end) if step > 0 else (v >= end):
            vals.append(format(v, "x") if kind == "SEQx" else str(v))
            v += step
            if len(vals) > MAX_EXPANDED_LINES:
                break
        return [{var: x} for x in vals]
    # LST: either "var, v1, v2" or "{a, b}, {1,2}, {3,4}"
    groups = re.findall(r"\{([^}]*)\}|([^,{}]+)", spec)
    items = [(g[0] if g[0] else g[1]).strip() for g in groups]
    items = [i for i in items if i != ""]
    if len(items) < 2:
        raise ValueError("expected (var, value, ...)")
    names = [n.strip() for n in items[0].split(",")]
    out = []
    for it in items[1:]:
        vals = [v.strip() for v in it.split(",")] if len(names) > 1 else [it]
        if len(vals) != len(names):
            raise ValueError(f"{len(names)} variables but value group {{{it}}}")
        out.append(dict(zip(names, vals)))
    return out


MAX_FILE_BYTES = 16 * 1024 * 1024


class NotRegularFile(ConfigError):
    """A config file that keepalived skips: a FIFO, a device, a directory, a socket or an executable."""

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path} is {kind}")
        self.path = path
        self.kind = kind


def _kind(mode: int) -> str | None:
    """Why keepalived would skip a file of this mode, or None for a readable config file."""
    for test, kind in ((_stat.S_ISFIFO, "a FIFO"), (_stat.S_ISCHR, "a character device"),
                       (_stat.S_ISBLK, "a block device"), (_stat.S_ISDIR, "a directory"),
                       (_stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    if not _stat.S_ISREG(mode):
        return "not a regular file"
    if mode & (_stat.S_IXUSR | _stat.S_IXGRP | _stat.S_IXOTH):
        return "executable"
    return None


def _read_file(path: str) -> str:
    """Read a config file; refuse what keepalived skips, without ever blocking on it.

    The mode is checked before opening (opening a FIFO for reading waits for a
    writer, a device may act on open) and again on the opened descriptor,
    which is opened non-blocking so a file swapped for a FIFO in between
    cannot hang the reader either.
    """
    kind = _kind(os.stat(path).st_mode)
    if kind:
        raise NotRegularFile(path, kind)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        kind = _kind(os.fstat(fd).st_mode)
        if kind:
            raise NotRegularFile(path, kind)
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return data.decode("utf-8", errors="replace")


def _default_glob(pattern: str) -> list[str]:
    if any(c in pattern for c in "*?["):
        return list(_glob.glob(pattern))  # each match is checked when read (a FIFO or directory is skipped)
    return [pattern] if os.path.exists(pattern) else []
