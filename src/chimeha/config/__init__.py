"""keepalived.conf reader: ``load()``/``loads()`` give a typed model plus diagnostics.

Pipeline: ``lexer`` (lines, includes, ``@`` conditionals, ``$`` parameters) ->
``parser`` (block tree) -> ``build``/``build_lvs`` (typed frozen model) ->
``validate`` (semantic checks).  ``cross_check`` compares several nodes;
``render`` writes a model back as keepalived.conf text.  Nothing here raises on
bad input: every problem is a ``Diagnostic`` with file and line.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any, Callable, Iterable

from .build import build_config
from .lexer import Lexer
from . import model as _model
from .model import *  # noqa: F401,F403  (the model is part of this package's API)
from .model import Config, Diagnostic, LoadResult
from .parser import parse_lines
from .validate import cross_check as _cross_check
from .validate import validate as _validate
from .values import Ctx

__all__ = ["load", "loads", "render", "check_nodes", "default_config_id", *_model.__all__]


def __getattr__(name: str) -> Any:
    # ``render`` is only needed by tools that write a config back (the daemon
    # only loads one): import it on first use.
    if name == "render":
        from .render import render

        globals()["render"] = render
        return render
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps ``chimeha.config.render`` the function once the submodule of that name is imported.

    Importing ``chimeha.config.render`` (the module) binds it as this package's
    ``render`` attribute; the public name is the function, as before render
    became lazy.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "render" and isinstance(value, types.ModuleType):
            value = value.render
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def default_config_id() -> str:
    """keepalived's default config-id: the first label of the node name."""
    try:
        return os.uname().nodename.split(".")[0]
    except (AttributeError, OSError):  # pragma: no cover - non-POSIX
        return ""


def _run(feed: Callable[[Lexer], bool], config_id: str | None, opener=None) -> LoadResult:
    diags: list[Diagnostic] = []
    try:
        lexer = Lexer(diags, config_id=default_config_id() if config_id is None else config_id,
                      **({"opener": opener} if opener else {}))
        if not feed(lexer):
            return LoadResult(None, _sorted(diags))
        tree = parse_lines(lexer.lines, diags)
        ctx = Ctx(diags)
        from .capabilities import report  # here, so `python -m chimeha.config.capabilities` runs it fresh

        report(tree, ctx)
        config = build_config(tree, ctx)
        _validate(config, diags)
        # The daemon reads a file in a worker thread while its event loop advertises: freeing an
        # 8 MB file's tokens and statements at return is one C-level cascade holding the GIL
        # (measured 0.2-0.35 s); freed in slices, the loop gets its turn in between.
        _release(lexer.lines)
        _release(tree)
    except RecursionError:
        diags.append(Diagnostic("<config>", 0, "error", "too-deep", "configuration nested too deeply"))
        return LoadResult(None, _sorted(diags))
    except Exception as exc:  # a bug of ours: report it, never take the caller (the daemon) down
        diags.append(Diagnostic("<config>", 0, "error", "internal-error",
                                f"chime-ha could not read this configuration ({type(exc).__name__}: {exc}); "
                                "please report this as a bug"))
        return LoadResult(None, _sorted(diags))
    return LoadResult(config, _sorted(diags))


def _release(big: list, step: int = 2048) -> None:
    while big:
        del big[-step:]


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    # Stable: keeps file order of appearance, then line order within a file.
    order: dict[str, int] = {}
    for d in diags:
        order.setdefault(d.file, len(order))
    unique = list(dict.fromkeys(diags))
    return sorted(unique, key=lambda d: (order[d.file], d.line))


def load(path: str, config_id: str | None = None) -> LoadResult:
    """Read a keepalived.conf file (and its includes). Never raises on bad input."""
    return _run(lambda lx: lx.lex_file(path), config_id)


def loads(text: str, filename: str = "<string>", config_id: str | None = None,
          opener: Callable[[str], str] | None = None) -> LoadResult:
    """Read keepalived.conf text; ``filename`` is used in diagnostics and for includes."""
    def feed(lx: Lexer) -> bool:
        lx.lex_text(text, filename)
        return True

    return _run(feed, config_id, opener)


def check_nodes(results: Iterable[LoadResult]) -> list[Diagnostic]:
    """Cross-node diagnostics for several nodes' configs (those that loaded)."""
    diags: list[Diagnostic] = []
    _cross_check([r.config for r in results if r.config is not None], diags)
    return _sorted(diags)
