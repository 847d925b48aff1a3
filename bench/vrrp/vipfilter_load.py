"""How long one no_accept filter change takes (``VipFilter.set``: render + ``nft -f``), in a lab namespace.

A takeover of a no_accept instance waits for this before its VIP is added
(the drop rule goes in first). Run as root:

    .venv/bin/python bench/vrrp/vipfilter_load.py --changes 200

The namespace is made here and deleted at the end; nothing leaves it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from chimeha.net.vipfilter import VipFilter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--instances", type=int, default=4, help="instances taking turns (each holds one VIP)")
    args = ap.parse_args()
    ns = f"chbench-vf-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        vf = VipFilter(netns=ns)
        times = []
        for i in range(args.changes):
            t = time.perf_counter()
            vf.set(f"VI_{i % args.instances}", [f"10.99.{i // 250}.{i % 250 + 1}"], i % 2 == 0)
            times.append((time.perf_counter() - t) * 1000)
        vf.close()
        assert vf.errors == 0, "nft failed"
        times.sort()
        print(f"VipFilter.set x{len(times)}: median {statistics.median(times):.1f} ms, "
              f"p90 {times[int(len(times) * 0.9)]:.1f} ms, max {times[-1]:.1f} ms")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
