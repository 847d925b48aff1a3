"""``chime-ha reload``: re-read the configuration without dropping the VIPs."""

from __future__ import annotations

import argparse
import sys

from chimeha.observe.control import ControlClient, ControlError

from .status import add_control_argument

DESCRIPTION = """\
Ask the running daemon to re-read its configuration file and apply the
difference, and wait for the outcome. A configuration with errors is refused
as a whole: the daemon keeps running the old one and this command prints the
errors (FILE:LINE: severity: message) and exits 1, so a typo never takes the
virtual IPs down. Warnings are printed but do not stop the reload.

This is what `systemctl reload chime-ha` runs (ExecReload in chime-ha.service).
Check a file before installing it with `chime-ha check FILE`."""

EPILOG = """\
examples:
  chime-ha reload
  chime-ha reload --control /run/chime-ha/lab.sock
  systemctl reload chime-ha

exit status:
  0  the new configuration is in effect
  1  the reload was refused (errors printed) or the daemon could not be reached
  2  bad command-line arguments"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("reload", help="make the running daemon re-read its configuration",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_control_argument(parser)
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the daemon's answer (default 60)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if not (0 < args.timeout < 86400):
        print(f"chime-ha reload: --timeout must be between 0 and 86400 seconds, got {args.timeout}", file=sys.stderr)
        return 2
    try:
        outcome = ControlClient(args.control, timeout=args.timeout).reload()
    except ControlError as exc:
        print(f"chime-ha reload: {exc}", file=sys.stderr)
        return 1
    outcome = outcome if isinstance(outcome, dict) else {}
    for diag in outcome.get("diagnostics") or []:
        print(diag, file=sys.stderr)
    ok = bool(outcome.get("ok"))
    message = outcome.get("message") or ("configuration reloaded" if ok else "reload refused")
    print(f"chime-ha reload: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
