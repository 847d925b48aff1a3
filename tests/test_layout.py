"""The shape of src/chimeha, checked on the source (ast), not by importing it.

Fails on:
* an import cycle between modules of chimeha: module-level AND function-level
  imports count (a lazy import inside a function or a module ``__getattr__``
  hides a cycle from the interpreter, not from this test); importing
  ``chimeha.a.b`` also runs ``chimeha/a/__init__.py``, so it is an edge to
  that package too (except a module's own enclosing packages);
* use of another module's private name: ``from x import _y``, ``x._y`` on an
  imported chimeha module or name, and ``obj._y`` where ``_y`` is defined
  nowhere in the accessing module (so it can only be someone else's);
* I/O imports (asyncio, socket, subprocess, time, threading, select,
  selectors) in the pure core: config/, vrrp/, track/, sim/, lvs/ except
  lvs/backends/, check/schedule.py, bfd/ except its adapter; vrrp/, track/ and
  sim/ may not import ``os`` either (the config reader opens files);
* a module of 700 lines or more.

Known violations in code other helpers own are listed in ``ALLOWED`` with the
owner who removes them; the list can only shrink (an entry that no longer
occurs fails the test too).  The lead empties it at merge.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "chimeha"
IO = frozenset({"asyncio", "socket", "subprocess", "time", "threading", "select", "selectors"})
MAX_LINES = 700

# (kind, detail) -> owner who removes it.  Kinds: "cycle" (sorted members joined by " <-> "),
# "private" ("module: expression"), "io" ("module: imported"), "size" ("module").
ALLOWED: dict[tuple[str, str], str] = {}  # emptied when node-core landed; keep it empty


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
TREES: dict[str, ast.Module] = {m: ast.parse(p.read_text(), str(p)) for m, p in MODULES.items()}


def is_package(mod: str) -> bool:
    return MODULES[mod].name == "__init__.py"


def resolve(mod: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names."""
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_package(mod) else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dynamic_imports(mod: str) -> set[str]:
    """Modules reached through ``importlib.import_module(...)`` / ``__import__(...)``.

    A constant argument names its module; a computed one (a lazy package
    ``__getattr__`` building ``f"{__name__}.{...}"``) is taken to reach every
    submodule of the package whose name is a string constant in the module.
    """
    tree = TREES[mod]
    out: set[str] = set()
    consts = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    pkg = mod if is_package(mod) else mod.rpartition(".")[0]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else (f.id if isinstance(f, ast.Name) else "")
        if name not in ("import_module", "__import__") or not node.args:
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            out.add(arg.value)
        else:
            out |= {f"{pkg}.{c}" for c in consts if f"{pkg}.{c}" in MODULES}
    return {m for m in out if m.split(".")[0] == "chimeha"}


def imported_modules(mod: str) -> dict[str, set[str]]:
    """chimeha modules ``mod`` imports (anywhere in it) -> the local names bound to them."""
    out: dict[str, set[str]] = defaultdict(set)
    for target in _dynamic_imports(mod):
        out[target]
    for node in ast.walk(TREES[mod]):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "chimeha":
                    out[a.name].add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            target = resolve(mod, node)
            if target.split(".")[0] != "chimeha":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES:
                    out[sub].add(a.asname or a.name)
                else:
                    out[target].add(a.asname or a.name)
    return out


def import_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for mod in MODULES:
        own = {".".join(mod.split(".")[:i]) for i in range(1, len(mod.split(".")) + 1)}
        for target in imported_modules(mod):
            parts = target.split(".")
            if target in MODULES and target != mod:
                edges[mod].add(target)  # named explicitly: counts even if it is our own package
            for i in range(2, len(parts)):  # the packages it runs on the way, except our own
                t = ".".join(parts[:i])
                if t in MODULES and t not in own:
                    edges[mod].add(t)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(MODULES):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _defined_private_names(tree: ast.Module) -> set[str]:
    """Every ``_name`` a module defines: functions, classes, assignments, attributes set on anything."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return {n for n in names if n.startswith("_")}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(mod: str) -> list[str]:
    tree = TREES[mod]
    found = []
    chimeha_names = {n for names in imported_modules(mod).values() for n in names}
    stdlib_names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = resolve(mod, node)
            if target.split(".")[0] == "chimeha":
                for a in node.names:
                    if _is_private(a.name) and f"{target}.{a.name}" not in MODULES:
                        found.append(f"from {target} import {a.name}")
            else:
                stdlib_names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            stdlib_names |= {(a.asname or a.name).split(".")[0] for a in node.names
                             if a.name.split(".")[0] != "chimeha"}
    own = _defined_private_names(tree)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in ("self", "cls"):
            continue
        if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
            continue
        if isinstance(base, ast.Name) and base.id in stdlib_names and base.id not in chimeha_names:
            continue  # the standard library's own (os._exit, sys._getframe)
        if isinstance(base, ast.Name) and base.id in chimeha_names:
            found.append(f"{base.id}.{node.attr}")
        elif node.attr not in own:
            found.append(f"{ast.unparse(base)}.{node.attr}")
    return sorted(set(found))


def pure(mod: str) -> tuple[bool, frozenset]:
    """(is this module in the pure core, what it may not import)."""
    parts = mod.split(".")[1:]
    if not parts:
        return False, frozenset()
    top = parts[0]
    if top in ("vrrp", "track", "sim"):
        return True, IO | {"os"}
    if top == "config":
        return True, IO
    if top == "lvs" and (len(parts) < 2 or parts[1] != "backends"):
        return True, IO
    if mod == "chimeha.check.schedule":
        return True, IO
    if top == "bfd" and not any("adapter" in p for p in parts[1:]):
        return True, IO
    if top == "snmp" and parts[-1] != "subagent":  # the AgentX codec and the MIB tables
        return True, IO
    return False, frozenset()


def io_imports(mod: str) -> list[str]:
    is_pure, banned = pure(mod)
    if not is_pure:
        return []
    found = set()
    for node in ast.walk(TREES[mod]):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return sorted(found & banned)


def violations() -> set[tuple[str, str]]:
    out = set()
    for comp in cycles(import_edges()):
        out.add(("cycle", " <-> ".join(comp)))
    for mod in MODULES:
        out |= {("private", f"{mod}: {use}") for use in private_uses(mod)}
        out |= {("io", f"{mod}: {name}") for name in io_imports(mod)}
        if len(MODULES[mod].read_text().splitlines()) >= MAX_LINES:
            out.add(("size", mod))
    return out


def test_layout():
    found = violations()
    new = sorted(found - set(ALLOWED))
    gone = sorted(set(ALLOWED) - found)
    assert not new, "layout violations:\n" + "\n".join(f"{k}: {d}" for k, d in new)
    assert not gone, "fixed, so remove from ALLOWED:\n" + "\n".join(f"{k}: {d}" for k, d in gone)


# --------------------------------------------------------------------------- the checker itself


def _fake(monkeypatch, files: dict[str, str]):
    monkeypatch.setattr(__import__(__name__), "MODULES", {m: Path(f"/fake/{m.replace('.', '/')}"
                                                                   + ("/__init__.py" if p else ".py"))
                                                          for m, (p, _) in files.items()})
    monkeypatch.setattr(__import__(__name__), "TREES", {m: ast.parse(src) for m, (_, src) in files.items()})


def test_detects_a_cycle_hidden_in_a_lazy_getattr(monkeypatch):
    _fake(monkeypatch, {
        "chimeha": (True, ""),
        "chimeha.a": (False, "def __getattr__(name):\n    from chimeha import b\n    return b\n"),
        "chimeha.b": (False, "import chimeha.a\n"),
        "chimeha.c": (False, "from . import a\n"),
        "chimeha.p": (True, "import importlib\n_E = {'x': 'm'}\ndef __getattr__(n):\n"
                            "    return importlib.import_module(f'{__name__}.{_E[n]}')\n"),
        "chimeha.p.m": (False, ""),
        "chimeha.q": (False, "from chimeha.p.m import y\n"),
        "chimeha.p.n": (False, "import chimeha.q\n"),
    })
    assert cycles(import_edges()) == [["chimeha.a", "chimeha.b"]]
    # p's lazy __getattr__ reaches p.m; q imports p.m and so runs p; p.n imports q: p.m is no cycle,
    # but a package that imports (even lazily) what imports it is.
    monkeypatch.setitem(TREES, "chimeha.p.m", ast.parse("import chimeha.q\n"))
    assert ["chimeha.p", "chimeha.p.m", "chimeha.q"] in cycles(import_edges())


def test_detects_private_names(monkeypatch):
    _fake(monkeypatch, {
        "chimeha": (True, ""),
        "chimeha.a": (False, "_x = 1\nclass A:\n    def _m(self):\n        return self._m\n"),
        "chimeha.b": (False, "from chimeha.a import _x\nfrom chimeha import a\n"
                             "def f(d):\n    return a._x, d._build(), os._exit\nimport os\n"),
    })
    assert private_uses("chimeha.a") == []
    assert private_uses("chimeha.b") == ["a._x", "d._build", "from chimeha.a import _x"]


def test_detects_io_in_the_pure_core(monkeypatch):
    _fake(monkeypatch, {
        "chimeha": (True, ""),
        "chimeha.vrrp": (True, ""),
        "chimeha.vrrp.x": (False, "def f():\n    import time\n    import os\n"),
        "chimeha.lvs": (True, ""),
        "chimeha.lvs.backends": (True, ""),
        "chimeha.lvs.backends.nft": (False, "import subprocess\n"),
        "chimeha.config": (True, ""),
        "chimeha.config.lexer": (False, "import os\n"),
    })
    assert io_imports("chimeha.vrrp.x") == ["os", "time"]
    assert io_imports("chimeha.lvs.backends.nft") == []
    assert io_imports("chimeha.config.lexer") == []


@pytest.mark.parametrize("mod", ["chimeha.vrrp.instance", "chimeha.config.lexer", "chimeha.check.schedule"])
def test_real_modules_are_seen(mod):
    assert mod in MODULES and pure(mod)[0]
