"""``chime-ha simulate``: offline election and failover timeline for a set of configs.

Loads each ``-f [NAME=]FILE`` as one node, runs the pure VRRP core on a
simulated segment with a fake clock (instant, no root), applies ``--event``s
and prints who is master, the timeline with the predicted VIP move times from
the RFC formulas, and warnings about configs prone to split brain or flapping.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EVENT_HELP = (
    "TIME NODE ACTION [ARG]; actions: check-fail SCRIPT, check-ok SCRIPT, link-down, link-up, "
    "partition, heal (traffic lost, carrier up), input-cut, input-restore (incoming VRRP lost, sending works), "
    "stop, start, crash, reload, track-down NAME, track-up NAME (e.g. '2.0 server1 check-fail chk_server')"
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "simulate",
        help="simulate the VRRP election and failover timeline of several configs",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("-f", "--file", dest="files", action="append", required=True, metavar="[NAME=]FILE",
                   help="a node's keepalived.conf (node name: NAME, else the file name without .conf)")
    p.add_argument("--event", "-e", dest="events", action="append", default=[], metavar="EVENT", help=EVENT_HELP)
    p.add_argument("--address", dest="addresses", action="append", default=[], metavar="NAME=IP",
                   help="a node's primary address (decides equal-priority tie-breaks); default "
                        "unicast_src_ip, else 192.0.2.N in -f order")
    p.add_argument("--until", type=float, default=None, metavar="SECONDS",
                   help="simulate up to this time (default: long enough for the last event to settle)")
    p.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                   help="one-way advert delivery delay (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    return p


def _node_name(arg: str) -> tuple[str, str]:
    if "=" in arg and not os.path.exists(arg):
        name, path = arg.split("=", 1)
        return name, path
    base = os.path.basename(arg)
    return (base[:-5] if base.endswith(".conf") else base), arg


def _strip_common_prefix(names: list[str], explicit: list[bool]) -> list[str]:
    """``active-standby-server1``/``-server2`` -> ``server1``/``server2`` (derived names only)."""
    derived = [n for n, e in zip(names, explicit) if not e]
    if len(derived) < 2:
        return names
    prefix = os.path.commonprefix(derived)
    cut = max(prefix.rfind("-"), prefix.rfind("_"), prefix.rfind("."))
    if cut < 0:
        return names
    return [n if e else n[cut + 1:] for n, e in zip(names, explicit)]


def run(args) -> int:
    from chimeha.sim.scenario import NodeInput, ScenarioError, format_text, parse_event, simulate

    from chimeha.config import load

    err = sys.stderr
    nodes = []
    failed = False
    parsed = [_node_name(a) for a in args.files]
    explicit = ["=" in a and not os.path.exists(a) for a in args.files]
    names = _strip_common_prefix([n for n, _ in parsed], explicit)
    for arg, name, (_, path) in zip(args.files, names, parsed):
        if not name:
            print(f"chime-ha simulate: -f {arg!r}: empty node name", file=err)
            return 2
        if not os.path.isfile(path):
            print(f"chime-ha simulate: -f {arg!r}: no such file {path}", file=err)
            return 2
        res = load(path)
        for d in res.diagnostics:
            if d.severity == "error":
                print(str(d), file=err)
        if res.config is None or not res.ok:
            print(f"chime-ha simulate: {path}: configuration has errors (see above)", file=err)
            failed = True
            continue
        if not res.config.instances:
            print(f"chime-ha simulate: {path}: no vrrp_instance to simulate", file=err)
            failed = True
            continue
        nodes.append(NodeInput(name, res.config))
    if failed:
        return 2
    addr_map = {}
    for a in args.addresses:
        if "=" not in a:
            print(f"chime-ha simulate: --address {a!r}: expected NAME=IP", file=err)
            return 2
        k, v = a.split("=", 1)
        addr_map[k] = v
    unknown = set(addr_map) - {n.name for n in nodes}
    if unknown:
        print(f"chime-ha simulate: --address for unknown node(s) {', '.join(sorted(unknown))} "
              f"(nodes: {', '.join(n.name for n in nodes)})", file=err)
        return 2
    for n in nodes:
        n.address = addr_map.get(n.name, "")
    if args.latency < 0 or (args.until is not None and args.until < 0):
        print("chime-ha simulate: --latency and --until must be >= 0", file=err)
        return 2
    try:
        events = [parse_event(e) for e in args.events]
        result = simulate(nodes, events, until=args.until, latency=args.latency)
    except ScenarioError as exc:
        print(f"chime-ha simulate: {exc}", file=err)
        return 2
    except (ValueError, KeyError) as exc:  # a config the core cannot model; never a traceback
        print(f"chime-ha simulate: cannot simulate these configs: {exc}", file=err)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_text(result))
    return 0
