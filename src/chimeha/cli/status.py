"""``chime-ha status``: ask the running daemon what it is doing."""

from __future__ import annotations

import argparse
import json
import sys

from chimeha.observe.control import DEFAULT_CONTROL_PATH, ControlClient, ControlError

DESCRIPTION = """\
Show what the running chime-ha daemon is doing, read over its control socket.

Per VRRP instance: the state (INIT, BACKUP, MASTER, FAULT, or SPLIT BRAIN while
this master hears another master for its VRID), the base and effective
priority, the current master's address, the virtual IPs and whether this node
holds them, advertisements sent and received, dropped packets by reason, the
last transition with its reason, and the failover durations the daemon
measured. Per tracked script: its last result. Per virtual server: its real
servers, their health and weight, and the data plane in use.

--dump writes keepalived's dump files instead (the same as sending SIGUSR1,
SIGUSR2 or SIGRTMIN+2 to the daemon)."""

EPILOG = """\
examples:
  chime-ha status                     human-readable status
  chime-ha status --json | jq '.instances.VI_1.state'
  chime-ha status --control /run/chime-ha/lab.sock
  chime-ha status --dump stats        write /tmp/keepalived.stats and print its path

exit status:
  0  the daemon answered
  1  the daemon could not be reached or refused the request
  2  bad command-line arguments

The control socket is root-only: run as root (or with sudo)."""


def add_control_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", metavar="PATH", default=DEFAULT_CONTROL_PATH,
                        help=f"the daemon's control socket (default: {DEFAULT_CONTROL_PATH})")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("status", help="show instances, scripts and virtual servers of the running daemon",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_control_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the full snapshot as JSON (schema in docs/operations.md)")
    parser.add_argument("--instance", metavar="NAME", help="show only this VRRP instance")
    parser.add_argument("--dump", choices=("data", "stats", "json", "all"),
                        help="write keepalived's dump file(s) (/tmp/keepalived.data, .stats, .json) and print the paths")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from chimeha.observe.render import render_status
    from chimeha.observe.schema import normalize

    client = ControlClient(args.control)
    try:
        if args.dump:
            for path in client.dump(args.dump):
                print(path)
            return 0
        snap = normalize(client.status())
    except ControlError as exc:
        print(f"chime-ha status: {exc}", file=sys.stderr)
        return 1
    if args.instance:
        if args.instance not in snap["instances"]:
            known = ", ".join(snap["instances"]) or "none"
            print(f"chime-ha status: no VRRP instance {args.instance!r} (instances: {known})", file=sys.stderr)
            return 1
        snap["instances"] = {args.instance: snap["instances"][args.instance]}
    if args.json:
        json.dump(snap, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_status(snap))
    return 0
