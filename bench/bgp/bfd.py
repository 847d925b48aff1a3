"""Silent loss of a director's link: withdraw time with BFD vs with the BGP hold time only, same run.

The director's ``eth0`` goes down inside its namespace: no FIN, no RST reaches
the router, so only BFD (FRR bfdd on both sides, default 300 ms x 3) or the
hold timer (3 s, keepalive 1 s) can notice. Time from the link cut to the
VIP's next hop leaving the router's kernel FIB (polled every 10 ms); then the
link comes back and the session re-establishes before the next run.

    sudo .venv/bin/python bench/bgp/bfd.py [--repeat 5] [--out bench/bgp/BFD.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from chimeha.lab.bgp import DIRECTORS, HOLD, BgpLab  # noqa: E402


def _until(cond, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.01)
    return None


def runs(bfd: bool, repeat: int) -> list[float | None]:
    allhops = set(DIRECTORS.values())
    out = []
    with BgpLab(f"bf{os.getpid() % 1000}", bfd=bfd) as lab:
        if lab.wait_next_hops(allhops, 60) is None:
            raise SystemExit("the router did not learn the three next hops")
        for _ in range(repeat):
            time.sleep(4 if bfd else 1)  # BFD sessions up (they start slow: 1 s intervals until up)
            lab.cut_link("d1")
            out.append(_until(lambda: DIRECTORS["d1"] not in lab.next_hops(), HOLD + 5))
            lab.nodes["d1"].run(["ip", "link", "set", "eth0", "up"])
            if _until(lambda: lab.next_hops() == allhops, 60) is None:
                raise SystemExit("d1 did not come back")
            print(f"{'BFD' if bfd else 'hold time'}: {out[-1]}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    load0 = open("/proc/loadavg").read().split()[0]
    res = {"BFD (bfdd both sides, 300 ms x 3)": runs(True, args.repeat),
           f"hold time only ({HOLD} s, keepalive 1 s)": runs(False, args.repeat)}
    load1 = open("/proc/loadavg").read().split()[0]
    lines = ["# Silent link loss: BFD vs hold time (`bench/bgp/bfd.py`)", "",
             f"Command: `sudo .venv/bin/python bench/bgp/bfd.py --repeat {args.repeat}`",
             f"Machine: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; load average "
             f"before {load0}, after {load1} (shared). Link cut -> next hop gone from the router's FIB.", "",
             "| detection | median s | min s | max s | runs (s) |", "|---|---|---|---|---|"]
    for name, vals in res.items():
        ok = [v for v in vals if v is not None]
        lines.append(f"| {name} | {statistics.median(ok):.3f} | {min(ok):.3f} | {max(ok):.3f} | "
                     + ", ".join("timeout" if v is None else f"{v:.3f}" for v in vals) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
