"""``chime-ha check -f FILE [-f FILE ...] [--json]``: validate keepalived.conf files.

Each ``-f`` is one node's configuration; with several, the VRRP instances they
share are also compared (VIPs, timers, version, auth, priorities, who is
master).  Exit status: 0 when every node would run (warnings allowed), 1 when
any would not, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check",
        help="validate keepalived.conf files (one -f per node) and print diagnostics",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("-f", "--file", dest="files", action="append", metavar="FILE",
                   help="a node's configuration file (repeat for several nodes)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {file, line, severity, code, message}")
    p.add_argument("-i", "--config-id", default=None,
                   help="config-id for '@' conditional lines (default: first label of the host name)")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.add_argument("-s", "--source", action="store_true", help="show the source line under each diagnostic")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Check every file; print diagnostics; return 0, 1 or 2."""
    from chimeha.config import check_nodes, load

    files = getattr(args, "files", None) or []
    if not files:
        print("chime-ha check: give at least one configuration file with -f FILE", file=sys.stderr)
        return 2
    try:
        results = [load(f, config_id=args.config_id) for f in files]
        diags = [d for r in results for d in r.diagnostics]
        if len(results) > 1:
            diags += check_nodes(results)
    except Exception as exc:  # a bug of ours must still not print a traceback
        print(f"chime-ha check: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "quiet", False):
        diags = [d for d in diags if d.severity == "error"]
    failed = any(not r.ok for r in results) or any(d.severity == "error" for d in diags)
    try:
        _print(diags, args.json, getattr(args, "source", False))
    except BrokenPipeError:  # e.g. piped into head: the verdict still stands
        pass
    if not args.json:
        n_err = sum(d.severity == "error" for d in diags)
        n_warn = len(diags) - n_err
        verdict = "would not run" if failed else "ok"
        print(f"{len(files)} file(s): {n_err} error(s), {n_warn} warning(s): {verdict}", file=sys.stderr)
    return 1 if failed else 0


def _print(diags, as_json: bool, source: bool = False) -> None:
    if as_json:
        json.dump([d.as_dict() for d in diags], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        cache: dict[str, list[str]] = {}
        for d in diags:
            print(d)
            if source:
                text = _source_line(cache, d.file, d.line)
                if text is not None:
                    print(f"    {d.line:>5} | {text}")
    sys.stdout.flush()


def _source_line(cache: dict, file: str, line: int) -> str | None:
    if file not in cache:
        try:
            with open(file, encoding="utf-8", errors="replace") as fh:
                cache[file] = fh.read(16 * 1024 * 1024).split("\n")
        except OSError:
            cache[file] = []
    lines = cache[file]
    return lines[line - 1].rstrip() if 0 < line <= len(lines) else None
