"""Measurements on a running :class:`chimeha.lab.bgp.BgpLab` (shared by the tests, ``chime-ha lab bgp``
and ``bench/bgp/run.py``).

:func:`kill_survival` answers the question ECMP raises when a director dies:
which established connections live on? Long-lived connections exchange a line
every 0.1 s while one director's chime-ha is SIGKILLed; its bgpd dies with it,
the router withdraws that next hop and re-hashes the flows it carried onto
the two others. Connections that were carried by a *surviving* director must
not notice (0 failures); for the dead director's connections the fraction that
still answers afterwards is the number the issue asks for.
"""

from __future__ import annotations

import collections
import json
import selectors
import subprocess
import time

from chimeha.lab.bgp import DIRECTORS, HOLD, BgpLab


def readline(proc: subprocess.Popen, timeout: float) -> str:
    """One line of ``proc``'s stdout, or "" after ``timeout`` seconds."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        return proc.stdout.readline() if sel.select(timeout) else ""
    finally:
        sel.close()


def _say(proc: subprocess.Popen, text: str) -> None:
    proc.stdin.write(text + "\n")
    proc.stdin.flush()


def kill_survival(lab: BgpLab, victim: str = "d2", count: int = 150, before: float = 1.0,
                  after: float = 2.5, rejoin: bool = False) -> dict:
    """SIGKILL ``victim``'s chime-ha under ``count`` pinging connections; report who survived.

    ``before``: seconds of pinging before the kill; ``after``: seconds of pinging after the
    router withdrew the next hop (every re-hashed flow has been tried several times by then).
    ``rejoin``: then restart the victim, wait for its next hop and ping ``after`` seconds more
    (the router moves a share of the flows back: ``rejoin_failures`` counts the connections that
    failed only after the kill phase).
    """
    allhops = set(DIRECTORS.values())
    dead = DIRECTORS[victim]
    holder = lab.holder(count)
    rejoin_s, failed_before_rejoin = None, None
    try:
        opened = json.loads(readline(holder, 90) or "{}")
        _say(holder, "go")
        time.sleep(before)
        t0 = time.monotonic()
        lab.kill_director(victim)
        left = lab.wait_next_hops(allhops - {dead}, HOLD + 5)
        withdraw = None if left is None else time.monotonic() - t0
        time.sleep(after)
        if rejoin:
            _say(holder, "mark")
            failed_before_rejoin = json.loads(readline(holder, 30) or "{}").get("failed")
            t1 = time.monotonic()
            lab.start_director(victim)
            back = lab.wait_next_hops(allhops, 60)
            rejoin_s = None if back is None else time.monotonic() - t1
            time.sleep(after)
        _say(holder, "stop")
        conns = json.loads(readline(holder, 60) or "{}").get("conns", [])
    finally:
        lab.nodes["client"].stop(holder, grace=2)
    lab.attribute(conns, "source", "sport", "director")
    out = summarize(conns, dead, opened, withdraw)
    if rejoin:
        out["rejoin_s"] = rejoin_s
        out["rejoin_failures"] = None if failed_before_rejoin is None else \
            sum(1 for c in conns if c["failed"]) - failed_before_rejoin
    return out


def summarize(conns: list[dict], dead: str, opened: dict | None = None, withdraw: float | None = None) -> dict:
    """Split the holder's per-connection report into survivors' and the dead director's flows."""
    mine = [c for c in conns if c["director"] == dead]
    others = [c for c in conns if c["director"] != dead]
    continued = [c for c in mine if not c["failed"]]
    return {
        "dead": dead, "opened": (opened or {}).get("opened", len(conns)),
        "failed_open": (opened or {}).get("failed_open", 0), "withdraw_s": withdraw,
        "survivor_conns": len(others), "survivor_failures": sum(1 for c in others if c["failed"]),
        "survivor_examples": [c["failed"] for c in others if c["failed"]][:3],
        "dead_conns": len(mine), "dead_continued": len(continued),
        "dead_fraction": round(len(continued) / len(mine), 3) if mine else None,
        "dead_failures": dict(collections.Counter(c["failed"].split()[1] for c in mine if c["failed"])),
        "moved": sum(1 for c in mine if set(c["seen"]) - {dead, c.get("source")}),
        "unattributed": sum(1 for c in conns if c["director"] == "unknown"),
    }


def same_real_everywhere(chosen: dict[str, dict[str, list[str]]]) -> list[str]:
    """Source addresses for which two directors chose different real servers (Maglev must agree)."""
    return sorted(src for src, by in chosen.items()
                  if len({r for reals in by.values() for r in reals}) > 1)
