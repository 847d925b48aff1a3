"""Block-tree parser: logical lines in, a tree of statements out.

A statement is a keyword, its arguments (the rest of the line) and optionally
a block.  The opening brace may end the keyword's line or stand alone on the
next line (keepalived accepts both); ``}`` may follow other words on a line,
and several statements may share a line when braces separate them
(``virtual_ipaddress { 10.0.0.1 }``).  The parser knows no keywords: meaning
is assigned later by ``build``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .lexer import Line, Token
from .model import Diagnostic, Where

MAX_DEPTH = 64


@dataclass
class Stmt:
    """One statement: ``keyword args... [{ children }]``."""

    keyword: Token
    args: list[Token] = field(default_factory=list)
    block: list["Stmt"] | None = None

    @property
    def where(self) -> Where:
        return Where(self.keyword.file, self.keyword.line)

    @property
    def name(self) -> str:
        return self.keyword.text

    def words(self) -> tuple[str, ...]:
        return tuple(t.text for t in self.args)


def parse_lines(lines: list[Line], diags: list[Diagnostic]) -> list[Stmt]:
    """Build the statement tree; brace mistakes become diagnostics."""
    root: list[Stmt] = []
    stack: list[tuple[list[Stmt], Stmt | None]] = [(root, None)]
    current: Stmt | None = None
    pending: Stmt | None = None  # the last statement, if a '{' on the next line may open it
    too_deep = False

    for ln in lines:
        for tok in ln.tokens:
            if tok.text == "{" and not tok.quoted:
                target = current or pending
                if target is None or target.block is not None:
                    diags.append(Diagnostic(tok.file, tok.line, "error", "unexpected-brace", "'{' does not follow a keyword"))
                    # Open an anonymous block anyway so the matching '}' balances.
                    target = Stmt(Token("{", tok.file, tok.line))  # not attached to the tree
                if len(stack) > MAX_DEPTH:
                    if not too_deep:
                        diags.append(Diagnostic(tok.file, tok.line, "error", "too-deep",
                                                f"blocks nested deeper than {MAX_DEPTH} (the inner ones are ignored)"))
                    too_deep = True
                    target = Stmt(Token("{", tok.file, tok.line))  # balanced but not attached
                target.block = []
                stack.append((target.block, target))
                current = pending = None
            elif tok.text == "}" and not tok.quoted:
                current = pending = None
                if len(stack) == 1:
                    diags.append(Diagnostic(tok.file, tok.line, "error", "unmatched-brace", "'}' without a matching '{'"))
                    continue
                stack.pop()
            elif current is None:
                current = Stmt(tok)
                stack[-1][0].append(current)
                pending = None
            else:
                current.args.append(tok)
        if current is not None:
            pending = current
        current = None
    for _, opener in stack[1:]:
        if opener is not None:
            diags.append(
                Diagnostic(opener.keyword.file, opener.keyword.line, "error", "unclosed-block",
                           f"block '{opener.name}' opened here is never closed (missing '}}')")
            )
    return root
