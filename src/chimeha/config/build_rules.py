"""``virtual_rules`` / ``static_rules`` lines -> :class:`~chimeha.config.model.Rule` with a typed spec.

Rules without a preference are numbered as keepalived 2.2.7 numbers them: one
counter per family starting at 16384 and counting down, over every rule of
the file in order (static and virtual alike), restarted for every load (a
reload numbers them again from 16384, as keepalived's
``reset_next_rule_priority`` does).
"""

from __future__ import annotations

from dataclasses import replace

from .model import Rule
from .parser import Stmt
from .rules import RULE_START_PRIORITY, Names, RuleError, parse_rule, read_names
from .values import Ctx


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(1 << 20)
    except OSError:
        return None


class RuleNumbering:
    """Per-load state: the next automatic preference per family, and the host's name tables."""

    def __init__(self) -> None:
        self.next = {4: RULE_START_PRIORITY, 6: RULE_START_PRIORITY}
        self._names: Names | None = None

    @property
    def names(self) -> Names:
        if self._names is None:
            self._names = read_names(_read)
        return self._names


def build_rules(body: list[Stmt], ctx: Ctx, numbering: RuleNumbering, static: bool = False) -> list[Rule]:
    """One :class:`Rule` per line; a rule keepalived refuses is an error at its line (and left out).

    ``static``: lines of static_rules (which may name a track_group).
    """
    out = []
    for s in body:
        words = (s.name, *s.words())
        try:
            spec, warnings = parse_rule(words, numbering.names, static=static)
        except RuleError as exc:
            ctx.error(s.where, "invalid-rule", f"rule '{' '.join(words)}': {exc}")
            continue
        for code, msg in warnings:
            ctx.warning(s.where, code, f"rule '{' '.join(words)}': {msg}")
        if spec.priority is None:
            prio = numbering.next[spec.family]
            numbering.next[spec.family] -= 1
            spec = replace(spec, priority=prio)
            ctx.warning(s.where, "rule-no-preference",
                        f"rule has no preference: set to {prio} as keepalived does (counting down from "
                        f"{RULE_START_PRIORITY} in file order), which is probably not what you want")
        out.append(Rule(words, s.where, spec))
    return out
