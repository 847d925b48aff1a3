"""``chime-ha lab``: rehearse the seed document's verification in namespaces.

``chime-ha lab [active-standby|active-active] [--peer keepalived] [--keep] [--json]``
builds the two-server topology on this machine, runs the HA daemon with the
seed's configs and performs the verification step by step (see
:mod:`chimeha.lab.runner`). ``chime-ha lab bgp [--json]`` builds the BGP/ECMP
topology instead (an FRR router, three chime-ha directors) and checks it the
same way (:mod:`chimeha.lab.bgp_runner`). ``chime-ha lab down`` removes
whatever a kept (or killed) lab left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys

MODES = ("active-standby", "active-active")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab", help="rehearse the seed's HA verification in network namespaces (root)",
        description="Build the seed's two-server topology in network namespaces, run the HA daemon with the "
                    "seed's configs and perform the document's verification step by step. "
                    "`chime-ha lab down` removes what a kept lab left.")
    p.add_argument("mode", nargs="?", default="active-standby", choices=(*MODES, "bgp", "down"),
                   help="active-standby (default), active-active, bgp (FRR router + 3 directors, ECMP), "
                        "or `down` to tear down a kept lab")
    p.add_argument("--peer", choices=("keepalived",), default=None,
                   help="run keepalived on server2 instead of chime-ha (mixed cluster)")
    p.add_argument("--daemon", choices=("chime-ha", "keepalived"), default="chime-ha",
                   help="daemon on every server (default chime-ha; keepalived proves the lab itself)")
    p.add_argument("--keep", action="store_true", help="leave the lab running and print how to enter it")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--forwarding", choices=("nat", "direct"), default="nat",
                   help="bgp mode only: the directors' chimeha_bgp forwarding (direct: stateless steering, DSR)")
    # Tests give their runs their own namespace prefix, so `lab down` and a
    # user's lab never touch them (and vice versa).
    p.add_argument("--tag", default="lab", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _progress(to_stderr: bool):
    stream = sys.stderr if to_stderr else sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)
    return say


def _daemons(args) -> dict[str, str]:
    return {"server1": args.daemon, "server2": args.peer or args.daemon}


def _preflight(args) -> str | None:
    if os.geteuid() != 0:
        return "chime-ha lab needs root (network, PID and mount namespaces); run it with sudo"
    for tool in ("ip", "unshare", "nsenter", "ss", "pgrep"):
        if not shutil.which(tool):
            return f"chime-ha lab needs `{tool}` (iproute2 / util-linux / procps)"
    from chimeha.lab.cluster import seed_dir

    try:
        seed_dir()
    except FileNotFoundError as exc:
        return str(exc)
    wants = {args.daemon, "keepalived" if args.peer else args.daemon}
    if "keepalived" in wants and not shutil.which("keepalived"):
        return "keepalived is not installed (apt-get install keepalived)"
    if "keepalived" in wants:
        # Refuse before building anything: keepalived would exit a second after
        # start, and the operator would wait for a lab that cannot pass.
        from chimeha.lab.preflight import keepalived_blockers

        blockers = keepalived_blockers(args.mode, _daemons(args))
        if blockers:
            advice = ("run `chime-ha lab active-active` (chime-ha on both servers: it has its own virtual servers)"
                      if args.mode == "active-active" else "fix the config, or run the lab with chime-ha")
            return (f"keepalived cannot run the {args.mode} seed on this machine:\n"
                    + "".join(f"  - {b}\n" for b in blockers) + advice)
    if "chime-ha" in wants:
        from chimeha.lab.cluster import chime_ha_available

        why = chime_ha_available()
        if why:
            return f"{why}; use --daemon keepalived to exercise the lab with keepalived alone"
    return None


def run(args) -> int:
    if args.mode == "down":
        from chimeha.lab.state import teardown_all

        removed = teardown_all(args.tag)
        if args.json:
            print(json.dumps({"removed": removed}))
        else:
            print(f"removed {len(removed)} lab namespace(s)" + (f": {', '.join(removed)}" if removed else ""))
        return 0
    problem = _bgp_preflight(args) if args.mode == "bgp" else _preflight(args)
    if problem:
        if args.json:
            print(json.dumps({"ok": False, "error": problem}))
        else:
            print(f"chime-ha lab: {problem}", file=sys.stderr)
        return 2

    if args.mode == "bgp":
        return _run_bgp(args)
    from chimeha.lab.runner import format_report, run_lab
    from chimeha.lab.state import save_kept

    daemons = _daemons(args)
    say = _progress(args.json)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM/SIGHUP tear the lab down like Ctrl-C does.
    old = {s: signal.signal(s, on_term) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        who = ", ".join(f"{k} on {n}" for n, k in daemons.items())
        say(f"chime-ha lab: {args.mode} ({who})")
        report, kept = run_lab(args.mode, daemons, keep=args.keep, progress=say, tag=args.tag)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if args.json:
        out = report.as_dict()
        if kept is not None:
            out["kept"] = save_kept(kept)
        print(json.dumps(out, indent=None))
    else:
        print(format_report(report))
        if kept is not None:
            info = save_kept(kept)
            print("\nThe lab is still up (--keep). Enter a node with:")
            for name, cmd in info["enter"].items():
                print(f"  {name:<8} {cmd}")
            print("Tear it down with:  chime-ha lab down")
    if report.interrupted:
        return 130
    return 0 if report.ok else 1


def _bgp_preflight(args) -> str | None:
    if os.geteuid() != 0:
        return "chime-ha lab bgp needs root (network, PID and mount namespaces); run it with sudo"
    if args.keep or args.peer or args.daemon != "chime-ha":
        return "chime-ha lab bgp runs chime-ha on every director and tears down at the end (no --keep/--peer/--daemon)"
    for tool, pkg in (("ip", "iproute2"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
                      ("pgrep", "procps"), ("nft", "nftables"), ("vtysh", "frr")):
        if not shutil.which(tool):
            return f"chime-ha lab bgp needs `{tool}` (apt-get install {pkg})"
    from chimeha.lab.bgp import FRR

    for daemon in ("zebra", "bgpd"):
        if not os.path.exists(f"{FRR}/{daemon}"):
            return f"chime-ha lab bgp needs {FRR}/{daemon} (apt-get install frr)"
    return None


def _run_bgp(args) -> int:
    from chimeha.lab.bgp_runner import format_report, report_json, run_bgp_lab

    say = _progress(args.json)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_term) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        say(f"chime-ha lab: bgp (chime-ha on d1, d2, d3, forwarding {args.forwarding}; FRR on the router)")
        report = run_bgp_lab(tag=args.tag, progress=say, forwarding=args.forwarding)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    print(report_json(report) if args.json else format_report(report))
    if report.interrupted:
        return 130
    return 0 if report.ok else 1
