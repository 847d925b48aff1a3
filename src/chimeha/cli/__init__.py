"""The ``chime-ha`` command: one subcommand per module in this package.

Each subcommand module exposes ``add_parser(subparsers)`` and a ``run(args) -> int``;
their heavy dependencies (asyncio, netlink) are imported inside ``run`` so that
``chime-ha check`` never pays for them.  A subcommand module that fails to import
is a bug and fails loudly; it is never skipped.  An error meant for the operator
(``chimeha.errors.ChimeHaError``) is printed as one line, never as a traceback:
exit status 2 for a usage error, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from chimeha.errors import ChimeHaError, UsageError

# subcommand name -> module (relative to this package)
SUBCOMMANDS = {
    "check": "check",
    "run": "run",
    "simulate": "simulate",
    "lab": "lab",
    "status": "status",
    "journal": "journal",
    "reload": "reload",
    "genhash": "genhash",
    "verify": "verify",
    "keepalived": "keepalived_compat",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chime-ha",
        description="keepalived-compatible high availability: VRRP v2/v3 virtual IPs and virtual servers.",
        epilog=(
            "Typical use:\n"
            "  chime-ha check -f /etc/keepalived/keepalived.conf\n"
            "  chime-ha run -f /etc/keepalived/keepalived.conf --metrics 127.0.0.1:9650\n"
            "  chime-ha status; chime-ha journal --follow\n"
            "  chime-ha simulate -f server1.conf -f server2.conf --event '10 server1 link-down'\n"
            "  chime-ha lab            (root: the seed's verification in network namespaces)\n\n"
            "Each command has its own --help. It reads keepalived.conf unmodified; the deliberate\n"
            "differences from keepalived 2.2.7 are listed in docs/config.md."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"chime-ha {__import__('chimeha').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        importlib.import_module(f"{__name__}.{module}").add_parser(sub)
    return parser


def _keepalived_main(argv: list[str], prog: str) -> int:
    """keepalived's command line, handed this package so the drop-in need not import it."""
    compat = importlib.import_module(f"{__name__}.keepalived_compat")
    return compat.main(argv, prog, chime=sys.modules[__name__])


def run_module():
    """The ``run`` subcommand's module (the keepalived drop-in wraps its logging set-up)."""
    return importlib.import_module(f"{__name__}.run")


def main(argv: list[str] | None = None) -> int:
    # keepalived's own command line: invoked as `keepalived` (a symlink), or `chime-ha keepalived ...`
    if argv is None and os.path.basename(sys.argv[0]) == "keepalived":
        return _keepalived_main(sys.argv[1:], "keepalived")
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["keepalived"]:
        return _keepalived_main(args_in[1:], "chime-ha keepalived")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ChimeHaError as exc:  # the command's task boundary: operator words, no traceback
        print(f"chime-ha {args.command}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
