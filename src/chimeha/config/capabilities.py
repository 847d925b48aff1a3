"""One capability declaration per keepalived keyword path, and the warnings it gives.

Every keyword path of keepalived 2.2.7's grammar (``grammar.PATHS``) and every
chime-ha extension (``grammar.EXTENSIONS``) has exactly one entry in
:data:`DECLARATIONS`: ``implemented``, ``no-effect`` (with the reason) or
``not-implemented`` (with what is missing).  The data is split by area into
``cap_global``, ``cap_vrrp`` and ``cap_lvs``.

``load()`` calls :func:`report` on the statement tree, so ``chime-ha check``
and ``chime-ha run`` both warn ``no-effect`` / ``not-implemented`` at the
FILE:LINE of every such keyword a configuration uses.  Below a block that
does not act, its keywords are not reported again.

``python -m chimeha.config.capabilities --markdown`` prints the coverage
table of docs/config.md; ``--write docs/config.md`` replaces it in place
(between the ``capabilities`` markers).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Iterable

from ..errors import UsageError
from . import cap_global, cap_lvs, cap_vrrp
from .capabilities_base import STATUSES, Capability
from .grammar import EXTENSIONS, PATHS, VERSION
from .parser import Stmt
from .values import Ctx

Path = tuple[str, ...]

_KNOWN: frozenset[Path] = frozenset(PATHS) | frozenset(EXTENSIONS)


def grammar_kids(prefix: Path) -> list[str]:
    """The keywords the grammar (and chime-ha's extensions) has directly below ``prefix``."""
    n = len(prefix)
    return sorted({p[n] for p in _KNOWN if len(p) == n + 1 and p[:n] == prefix})


def _declarations() -> dict[Path, Capability]:
    out: dict[Path, Capability] = {}
    for table in (cap_global.ENTRIES, cap_vrrp.ENTRIES, cap_lvs.ENTRIES, cap_lvs.checker_entries(grammar_kids)):
        for key, cap in table.items():
            out[tuple(key.split())] = cap
    for path, (cap, _why) in EXTENSIONS.items():
        out[path] = cap
    return out


DECLARATIONS: dict[Path, Capability] = _declarations()

# Typed fields that only the config reader itself consumes: it folds them into
# other fields or uses them for a diagnostic.  Field -> where it goes.
FOLDED_FIELDS: dict[str, str] = {
    **{f"GlobalDefs.vrrp_garp_master_{k}": f"default of VrrpInstance.garp_master_{k} (build._finish_instance)"
       for k in ("delay", "repeat", "refresh", "refresh_repeat")},
    **{f"GlobalDefs.vrrp_{k}": f"default of VrrpInstance.{k} (build._finish_instance)"
       for k in ("check_unicast_src", "lower_prio_no_advert")},
    "VrrpInstance.native_ipv6": "decides VrrpInstance.family",
    "GlobalDefs.vmac_prefix": "names the VMACs in VrrpInstance.vmac (build_vmac.resolve)",
    "GlobalDefs.vmac_addr_prefix": "names the VMACs in VrrpInstance.vip_vmacs (build_vmac.resolve)",
    "VrrpInstance.use_vmac_addr": "decides VrrpInstance.vip_vmacs (build_vmac.resolve)",
    "VirtualAddress.use_vmac": "decides VrrpInstance.vip_vmacs (build_vmac.resolve)",
    "VrrpInstance.use_vmac": "the use_vmac NAME as written; VrrpInstance.vmac is the link",
    "VirtualServer.protocol_explicit": "the protocol-missing / fwmark-protocol diagnostics",
    "Block.keyword": "render() writes generic blocks back",
    **{f"VirtualServer.{k}": "read by name in lvs.desired.scheduler_flags (getattr(vs, f'{algo}_...'))"
       for k in ("sh_port", "sh_fallback", "mh_port", "mh_fallback")},
    "Block.children": "render() writes generic blocks back",
    "Config.blocks": "generic blocks; each one's keyword has its own declaration",
}
_HAS_KIDS: frozenset[Path] = frozenset(p[:i] for p in _KNOWN for i in range(1, len(p)))


def lookup(path: Iterable[str]) -> Capability | None:
    """The declaration for a keyword path (``("vrrp_instance", "use_vmac")``), None if unknown."""
    return DECLARATIONS.get(tuple(path))


def report(tree: list[Stmt], ctx: Ctx) -> None:
    """Warn at every statement whose keyword chime-ha reads but does not act on."""
    _walk(tree, (), ctx)


def _walk(stmts: list[Stmt], prefix: Path, ctx: Ctx) -> None:
    for st in stmts:
        path = prefix + (st.name,)
        cap = DECLARATIONS.get(path)
        if cap is None:
            continue  # unknown (the builder reports it) or free-form content (addresses, names)
        cap = cap.for_value(st.args[0].text if st.args else None)
        if not cap.acts:
            what = " ".join(path)
            if cap.status == "no-effect":
                ctx.warning(st.where, "no-effect", f"'{what}' has no effect in chime-ha: {cap.reason}")
            else:
                ctx.warning(st.where, "not-implemented", f"'{what}' is not implemented in chime-ha: {cap.reason}")
            continue
        if st.block is not None and path in _HAS_KIDS:
            _walk(st.block, path, ctx)


# --------------------------------------------------------------------------- the generated table


def counts() -> Counter:
    """How many keyword paths have each status."""
    return Counter(cap.status for cap in DECLARATIONS.values())


def markdown() -> str:
    """docs/config.md's coverage table, generated from :data:`DECLARATIONS`."""
    c = counts()
    lines = [
        f"Generated by `python -m chimeha.config.capabilities --markdown` from the capability declaration "
        f"(`src/chimeha/config/cap_*.py`); do not edit by hand. keepalived {VERSION} has {len(PATHS)} keyword "
        f"paths; chime-ha adds {len(EXTENSIONS)}. Of all {len(DECLARATIONS)}: "
        + ", ".join(f"{c[s]} {s}" for s in STATUSES) + ". A configuration that uses a `no-effect` or "
        "`not-implemented` keyword gets a warning of that code at its line.",
        "",
        "| keyword path | status | note |",
        "|---|---|---|",
    ]
    for path in sorted(DECLARATIONS):
        cap = DECLARATIONS[path]
        note = cap.reason
        if path in EXTENSIONS:
            note = (note + "; " if note else "") + "chime-ha extension: " + EXTENSIONS[path][1]
        for value, vcap in sorted(cap.values.items()):
            note = (note + "; " if note else "") + f"`{value}`: {vcap.status} ({vcap.reason})"
        lines.append(f"| `{' '.join(path)}` | {cap.status} | {note.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


BEGIN = "<!-- capabilities:begin -->"
END = "<!-- capabilities:end -->"


def splice(doc: str) -> str:
    """``doc`` with the text between the markers replaced by :func:`markdown`."""
    head, sep, rest = doc.partition(BEGIN)
    if not sep or END not in rest:
        raise UsageError(f"the document has no {BEGIN} ... {END} section")
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{markdown()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chimeha.config.capabilities",
                                 description="chime-ha's keyword capability declaration.")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print the coverage table (Markdown)")
    group.add_argument("--write", metavar="DOC", help="replace the table between the markers in DOC")
    args = ap.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
        return 0
    with open(args.write, encoding="utf-8") as fh:
        doc = fh.read()
    try:
        new = splice(doc)
    except UsageError as exc:
        print(f"{args.write}: {exc}", file=sys.stderr)
        return 1
    with open(args.write, "w", encoding="utf-8") as fh:
        fh.write(new)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
