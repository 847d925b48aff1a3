"""``chime-ha verify --node server1=root@192.168.231.11 --node server2=root@192.168.231.12``

Runs the seed document's verification section against a deployed cluster
over SSH (see :mod:`chimeha.verify.runner`): the VIPs on the master, the Web
UI and API answering through them from here, ``systemctl stop chime-server``
on the master moving the VIPs, ``systemctl start`` bringing them back. The
stopped service is always started again, also on Ctrl-C. Exit status 0 when
every step passed, 1 when one failed, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from chimeha.errors import UsageError

# The seed's active-standby layout (../shared/seed): what users reach.
DEFAULT_VIPS = ("192.168.231.10",)
DEFAULT_ENDPOINTS = (("Web UI", "192.168.231.10", 8033), ("API", "192.168.231.10", 8801),
                     ("API", "192.168.231.10", 8802))


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("verify", help="the seed's verification steps against real nodes, over SSH",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("--node", action="append", required=True, metavar="NAME=DEST",
                   help="a node and its ssh destination (user@host or a ~/.ssh/config alias); give two")
    p.add_argument("--vip", action="append", metavar="ADDR", help="a VIP to follow (default: the seed's 192.168.231.10)")
    p.add_argument("--endpoint", action="append", metavar="[LABEL=]HOST:PORT",
                   help="an HTTP endpoint to reach through a VIP (default: the seed's 8033, 8801, 8802)")
    p.add_argument("--service", default="chime-server", help="the service to stop and start (default: %(default)s)")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                   help="passed to ssh as -o OPT, e.g. IdentityFile=~/.ssh/ha (repeatable)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the VIPs to move (default 15)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
    return p


def _nodes(specs: list[str], options: list[str]):
    from chimeha.verify.remote import SshNode

    nodes = []
    for spec in specs:
        name, sep, dest = spec.partition("=")
        if not sep or not name or not dest:
            raise UsageError(f"--node {spec!r}: expected NAME=DEST, e.g. server1=root@192.168.231.11")
        nodes.append(SshNode(name, dest, tuple(a for o in options for a in ("-o", o))))
    if len(nodes) != 2 or nodes[0].name == nodes[1].name:
        raise UsageError("give exactly two --node NAME=DEST with different names (the document's two servers)")
    return nodes


def _endpoints(specs: list[str] | None):
    if not specs:
        return list(DEFAULT_ENDPOINTS)
    out = []
    for spec in specs:
        label, _, target = spec.rpartition("=") if "=" in spec else ("", "", spec)
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"--endpoint {spec!r}: expected [LABEL=]HOST:PORT")
        out.append((label or "endpoint", host.strip("[]"), int(port)))
    return out


def run(args: argparse.Namespace) -> int:
    from chimeha.lab.runner import format_step
    from chimeha.verify.runner import Verifier

    nodes = _nodes(args.node, args.ssh_option)
    endpoints = _endpoints(args.endpoint)
    vips = args.vip or list(DEFAULT_VIPS)
    say = (lambda t: None) if args.json else (lambda t: print(f"  .. {t}", file=sys.stderr, flush=True))
    report = Verifier(nodes, vips, endpoints, service=args.service, move_timeout=args.timeout, progress=say).run()
    if args.json:
        print(json.dumps({"ok": report.ok, "master": report.master, "interrupted": report.interrupted,
                          "restored": report.restored, "error": report.error, "notes": report.notes,
                          "duration": report.duration, "steps": [asdict(s) for s in report.steps]}, indent=2))
    else:
        for step in report.steps:
            print(format_step(step))
        if report.error:
            print(f"ERROR  {report.error}")
        if report.interrupted:
            print("INTERRUPTED")
        for note in report.notes:
            print(note)
        print(f"{'PASS' if report.ok else 'FAIL'}: {sum(s.ok for s in report.steps)}/4 steps in {report.duration:.1f} s")
    return 0 if report.ok else 1
