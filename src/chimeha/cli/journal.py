"""``chime-ha journal``: every state change, when, and why."""

from __future__ import annotations

import argparse
import json
import sys

from chimeha.observe.control import ControlClient, ControlError

from .argtypes import whole_number
from .status import add_control_argument

DESCRIPTION = """\
Show the transition journal: every VRRP state change with its time, the old
and new state, and the reason in operator words ("no advertisement from
192.168.231.11 for 3.008 s", "track_script chk_server failed 1/1 times",
"higher priority 255 from 192.168.231.11"), plus split-brain episodes and
configuration reloads.

The running daemon answers over its control socket. With --file the journal
file is read directly instead (JSON lines, default
/var/lib/chime-ha/journal.jsonl), which works when the daemon is down."""

EPILOG = """\
examples:
  chime-ha journal                    the last 50 entries
  chime-ha journal -n 0 --follow      only new entries, as they happen (Ctrl-C stops)
  chime-ha journal --instance VI_1 -n 200
  chime-ha journal --json | jq -r 'select(.to == "MASTER") | .reason'
  chime-ha journal --file /var/lib/chime-ha/journal.jsonl

exit status:
  0  entries shown (possibly none)
  1  the daemon or the file could not be read
  2  bad command-line arguments"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("journal", help="show (or follow) state changes and their reasons",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_control_argument(parser)
    parser.add_argument("-f", "--follow", action="store_true", help="keep running and print new entries as they happen")
    parser.add_argument("-n", "--lines", type=whole_number(0), default=50, metavar="N",
                        help="how many past entries to show first (default 50; 0 for none)")
    parser.add_argument("--instance", metavar="NAME", help="only this VRRP instance's entries")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    parser.add_argument("--file", metavar="PATH", help="read this journal file instead of asking the daemon")
    parser.set_defaults(func=run)
    return parser


def _emit(entry: dict, as_json: bool) -> None:
    from chimeha.observe.journal import format_entry

    print(json.dumps(entry, separators=(",", ":")) if as_json else format_entry(entry), flush=True)


def run(args: argparse.Namespace) -> int:
    if args.file:
        if args.follow:
            print("chime-ha journal: --follow needs the daemon; it cannot be combined with --file", file=sys.stderr)
            return 2
        from chimeha.observe.journal import read_file

        try:
            entries = read_file(args.file)
        except OSError as exc:
            print(f"chime-ha journal: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        if args.instance:
            entries = [e for e in entries if e.get("instance") == args.instance]
        for entry in entries[-args.lines:] if args.lines else []:
            _emit(entry, args.json)
        return 0
    client = ControlClient(args.control)
    try:
        if args.follow:
            for entry in client.follow(limit=args.lines, instance=args.instance):
                _emit(entry, args.json)
            print("chime-ha journal: the daemon closed the connection", file=sys.stderr)
            return 1
        for entry in client.journal(limit=args.lines, instance=args.instance):
            _emit(entry, args.json)
    except ControlError as exc:
        print(f"chime-ha journal: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `chime-ha journal | head`
        return 0
    return 0
