"""The ``chime-ha`` command: one subcommand per module in this package.

Each subcommand module exposes ``add_parser(subparsers)`` and a ``run(args) -> int``;
they are imported lazily so that ``chime-ha check`` never pays for asyncio or netlink.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

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
    for name, module in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{module}":
                continue  # subcommand not built yet
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # keepalived's own command line: invoked as `keepalived` (a symlink), or `chime-ha keepalived ...`
    if argv is None and os.path.basename(sys.argv[0]) == "keepalived":
        from .keepalived_compat import main as keepalived_main
        return keepalived_main(sys.argv[1:])
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["keepalived"]:
        from .keepalived_compat import main as keepalived_main
        return keepalived_main(args_in[1:], prog="chime-ha keepalived")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
