"""The capability declaration covers the whole grammar and tells the truth.

* every keyword path of keepalived 2.2.7's grammar has exactly one declaration,
  and every declaration is a grammar path (or a listed chime-ha extension);
* walking the whole grammar, one keyword path per generated config: the
  reader knows every path (no unknown-keyword), warns ``no-effect`` /
  ``not-implemented`` exactly where the declaration says so, at the line;
* a typed model field that nothing outside ``config/`` reads is declared as
  not acting (or folded by the reader), and an implemented keyword's field is
  read by the runtime;
* docs/config.md's coverage table is the generated one.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from chimeha.config import loads, model
from chimeha.config import capabilities as C
from chimeha.config.cap_vrrp import VIP_OPTIONS
from chimeha.config.grammar import EXTENSIONS, PATHS

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "chimeha"

# Arguments a block opener needs to be read as that block at all.
HEADS = {
    ("vrrp_instance",): "VI", ("vrrp_script",): "S", ("vrrp_track_process",): "P", ("track_file",): "F",
    ("vrrp_track_file",): "F", ("vrrp_sync_group",): "G", ("virtual_server_group",): "VG",
    ("virtual_server",): "10.0.0.1 80", ("virtual_server", "real_server"): "10.0.0.2 80",
    ("bfd_instance",): "B",
}


def config_for(path: tuple[str, ...]) -> tuple[str, list[int]]:
    """A config that uses ``path`` (its ancestors as blocks); the line of each level."""
    lines, where = [], []
    for depth, kw in enumerate(path):
        prefix = path[: depth + 1]
        indent = "  " * depth
        where.append(len(lines) + 1)
        if depth < len(path) - 1:
            lines.append(f"{indent}{kw} {HEADS.get(prefix, '')} {{".replace("  {", " {"))
        else:
            lines.append(f"{indent}{kw} 1")
    for depth in reversed(range(len(path) - 1)):
        lines.append("  " * depth + "}")
    return "\n".join(lines) + "\n", where


def test_every_grammar_path_has_one_declaration():
    grammar = set(PATHS)
    assert len(grammar) == len(PATHS) > 500
    missing = sorted(" ".join(p) for p in grammar if p not in C.DECLARATIONS)
    assert not missing, "keyword paths without a capability declaration:\n" + "\n".join(missing)
    stray = sorted(" ".join(p) for p in C.DECLARATIONS if p not in grammar and p not in EXTENSIONS)
    assert not stray, "declarations for paths keepalived 2.2.7 does not have:\n" + "\n".join(stray)
    for path, cap in C.DECLARATIONS.items():
        assert cap.status in ("implemented", "no-effect", "not-implemented"), path
        assert cap.acts or cap.reason, f"{' '.join(path)}: a keyword that does not act must say why"


def test_counts_are_truthful_not_all_implemented():
    c = C.counts()
    assert c["implemented"] + c["no-effect"] + c["not-implemented"] == len(C.DECLARATIONS)
    assert c["not-implemented"] > 50 and c["no-effect"] > 30  # what the issue measured: ~217 silently ignored
    # keywords chime-ha certainly does not act on must not be declared as if it did
    for path in ("global_defs enable_dbus", "vrrp_instance vrf", "virtual_server ops", "global_defs umask",
                 "net_namespace"):
        assert C.DECLARATIONS[tuple(path.split())].status == "not-implemented", path


@pytest.mark.parametrize("path", sorted(PATHS), ids=" ".join)
def test_walk_grammar(path):
    text, where = config_for(path)
    r = loads(text, "g.conf")
    assert r.config is not None
    by_line: dict[int, set[str]] = {}
    for d in r.diagnostics:
        by_line.setdefault(d.line, set()).add(d.code)
    for depth in range(len(path)):
        codes = by_line.get(where[depth], set())
        assert not codes & {"unknown-keyword", "unknown-block"}, (path, depth, r.diagnostics)
    # The first level that does not act warns with its status; nothing below it warns again.
    for depth in range(len(path)):
        cap = C.lookup(path[: depth + 1])
        assert cap is not None
        cap = cap.for_value("1")
        codes = by_line.get(where[depth], set()) & {"no-effect", "not-implemented"}
        if not cap.acts:
            assert codes == {cap.status}, (path, depth, r.diagnostics)
            for deeper in where[depth + 1:]:
                assert not by_line.get(deeper, set()) & {"no-effect", "not-implemented"}, (path, r.diagnostics)
            break
        assert not codes, (path, depth, r.diagnostics)


def test_auth_type_ah_is_implemented_and_warns_nothing():
    text = ("vrrp_instance VI {\n interface eth0\n virtual_router_id 1\n authentication {\n  auth_type AH\n"
            "  auth_pass x\n }\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n")
    assert not [d for d in loads(text).diagnostics if d.code in ("not-implemented", "no-effect")]


def test_value_specific_declaration_overrides_the_keyword():
    from chimeha.config.capabilities_base import ok, todo

    cap = ok(values={"AH": todo("not here")})
    assert cap.for_value("AH").status == "not-implemented" and cap.for_value("AH").reason == "not here"
    assert cap.for_value("PASS") is cap and cap.for_value(None) is cap


def test_warning_names_file_line_and_reason():
    r = loads("vrrp_instance VI {\n  interface eth0\n  virtual_router_id 1\n  promote_secondaries\n"
              "  virtual_ipaddress {\n    10.0.0.1\n  }\n}\n", "x.conf")
    (d,) = [d for d in r.diagnostics if d.code == "not-implemented"]
    assert str(d).startswith("x.conf:4: warning: 'vrrp_instance promote_secondaries' is not implemented in chime-ha: ")
    assert "promote_secondaries is not set" in d.message and r.ok


# --------------------------------------------------------------------------- fields


def _readers() -> tuple[set[str], set[str], set[str]]:
    """Attribute names, string constants and f-string prefixes used outside config/."""
    attrs, strings, prefixes = set(), set(), set()
    for p in SRC.rglob("*.py"):
        if p.relative_to(SRC).parts[0] == "config":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Attribute):
                attrs.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
            elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                prefixes.add(node.values[0].value)
    return attrs, strings, prefixes


BOOKKEEPING = {"where", "options", "positions", "script_users"}


def _model_fields() -> list[str]:
    out = []
    for name in model.__all__:
        cls = getattr(model, name)
        if dataclasses.is_dataclass(cls) and name not in ("Diagnostic", "Where", "LoadResult"):
            out += [f"{name}.{f.name}" for f in dataclasses.fields(cls) if f.name not in BOOKKEEPING]
    return out


def _declared_fields() -> dict[str, list]:
    out: dict[str, list] = {}
    caps = [*C.DECLARATIONS.values(), *VIP_OPTIONS.values()]
    caps += [v for cap in C.DECLARATIONS.values() for v in cap.values.values()]
    for cap in caps:
        if cap.field:
            out.setdefault(cap.field, []).append(cap)
    return out


def _is_read(field: str, readers) -> bool:
    attrs, strings, prefixes = readers
    name = field.split(".", 1)[1]
    return name in attrs or name in strings or any(p and name.startswith(p) for p in prefixes)


def test_unread_fields_are_declared_not_acting():
    readers = _readers()
    declared = _declared_fields()
    undeclared = []
    for field in _model_fields():
        if _is_read(field, readers) or field in C.FOLDED_FIELDS:
            continue
        # A checker's shared field is declared once, on TcpCheck.
        base = "TcpCheck." + field.split(".", 1)[1]
        caps = declared.get(field) or declared.get(base) or []
        if not caps or all(c.acts for c in caps):
            undeclared.append(field)
    assert not undeclared, ("typed fields nothing outside config/ reads, not declared as no-effect / "
                            "not-implemented (or in capabilities.FOLDED_FIELDS):\n" + "\n".join(undeclared))


def test_implemented_fields_are_read():
    readers = _readers()
    fields = set(_model_fields())
    for field, caps in _declared_fields().items():
        assert field in fields, f"declaration names a field the model does not have: {field}"
        if any(c.acts for c in caps):
            assert _is_read(field, readers), f"{field} is declared implemented but nothing outside config/ reads it"


def test_folded_fields_exist():
    fields = set(_model_fields())
    assert set(C.FOLDED_FIELDS) <= fields


# --------------------------------------------------------------------------- the document


def test_docs_table_is_generated():
    doc = (ROOT / "docs" / "config.md").read_text()
    assert C.splice(doc) == doc, "docs/config.md is stale: run python -m chimeha.config.capabilities --write docs/config.md"
    assert "| `vrrp_instance vrf` | not-implemented |" in doc and "| `vrrp_instance use_vmac` | implemented |" in doc


def test_markdown_cli(capsys):
    assert C.main(["--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == C.markdown() and out.count("\n| `") == len(C.DECLARATIONS)


# Modules that still read the untyped ``options`` bag, with the helper whose typed field replaces it
# (issue 9 item 5). The list can only shrink: an entry that no longer reads options fails too.
OPTIONS_READERS: dict[str, str] = {}  # emptied by typed (check_unicast_src, lower_prio_no_advert, notify FIFOs)


def test_runtime_reads_options_only_where_listed():
    readers = set()
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC).as_posix()
        if rel.startswith("config/"):
            continue
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            attr = isinstance(node, ast.Attribute) and node.attr == "options"
            getattr_call = (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                            and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                            and node.args[1].value == "options")
            if attr or getattr_call:
                readers.add(rel)
    assert readers == set(OPTIONS_READERS), (sorted(readers - set(OPTIONS_READERS)),
                                             sorted(set(OPTIONS_READERS) - readers))


def test_vip_and_route_option_words_warn():
    text = ("vrrp_instance V {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n"
            "  10.0.0.1/24 dev eth0 home label eth0:1\n }\n virtual_routes {\n"
            "  10.1.0.0/16 via 10.0.0.254 dev eth0 mtu 1400 metric 5\n }\n}\n")
    got = [(d.line, d.code, d.message.split("'")[1]) for d in loads(text).diagnostics
           if d.code in ("not-implemented", "no-effect")]
    assert got == [(5, "not-implemented", "home"), (8, "not-implemented", "mtu")]
    assert all(not VIP_OPTIONS[w].acts for w in ("home", "noprefixroute", "no_track"))
    assert VIP_OPTIONS["use_vmac"].acts
