"""How long the event loop stalls while a big configuration is read off the loop.

For each 8 MB file (comments; 40,000 unused vrrp_script blocks) and each way
of reading it, a fresh interpreter ticks an asyncio loop every 10 ms while the
file is read and reports the parse time and the longest gap between ticks (a
VRRPv3 master at advert_int 0.1 loses its VIP to the backup after about
0.36 s of silence):

* ``thread``: ``asyncio.to_thread(chimeha.config.load, path)`` (what reload did before);
* ``load_config``: ``chimeha.runtime.reload.load_config(path)`` (collector paused, result frozen,
  parse structures freed in slices).

    .venv/bin/python bench/reload/stall.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BASE = ("vrrp_instance VI_1 {\n interface lo\n virtual_router_id 5\n advert_int 0.1\n version 3\n"
        " virtual_ipaddress {\n  10.0.0.1/24\n }\n}\n")
SIZE = 8 * 1024 * 1024

CHILD = r"""
import asyncio, json, sys, time
how, path = sys.argv[1], sys.argv[2]

async def main():
    if how == "thread":
        from chimeha.config import load
        job = asyncio.to_thread(load, path)
    else:
        from chimeha.runtime.reload import load_config
        job = load_config(path)
    t0 = last = time.monotonic()
    cpu_last = time.process_time()
    fut = asyncio.ensure_future(job)
    worst, worst_cpu, worst_at = 0.0, 0.0, 0.0
    end = None
    while end is None or time.monotonic() < end:
        await asyncio.sleep(0.01)
        now, cpu = time.monotonic(), time.process_time()
        if now - last > worst:
            # the process's CPU time over the gap: about the gap when our own parse thread held
            # the GIL, much less when the machine did not run us at all (other load)
            worst, worst_cpu, worst_at = now - last, cpu - cpu_last, now - t0
        last, cpu_last = now, cpu
        if end is None and fut.done():
            parse, end = now - t0, now + 2.0  # and 2 s after: collections of the new objects
    assert fut.result().ok
    print(json.dumps({"parse": parse, "worst": worst, "worst_cpu": worst_cpu, "worst_at": worst_at}))

asyncio.run(main())
"""


def files(tmp: Path) -> dict[str, Path]:
    line = "# " + "x" * 77 + "\n"
    comments = tmp / "comments.conf"
    comments.write_text(BASE + line * (SIZE // len(line)))
    block = '\nvrrp_script unused_{i} {{\n    script "/bin/true ' + "a" * 150 + '"\n    interval 2\n}}'
    parts, total, i = [BASE], len(BASE), 0
    while total < SIZE:
        s = block.format(i=i)
        parts.append(s)
        total += len(s)
        i += 1
    blocks = tmp / "blocks.conf"
    blocks.write_text("".join(parts) + "\n")
    return {"comments": comments, "unused blocks": blocks}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for kind, path in files(Path(tmp)).items():
            for how in ("thread", "load_config"):
                got = []
                for _ in range(args.runs):
                    out = subprocess.run([sys.executable, "-c", CHILD, how, str(path)], check=True,
                                         capture_output=True, text=True).stdout
                    got.append(json.loads(out))
                worst = [g["worst"] * 1000 for g in got]
                parse = [g["parse"] for g in got]
                detail = ", ".join(
                    f"{g['worst'] * 1000:.0f} ms at {g['worst_at']:.2f} s (cpu {g['worst_cpu'] * 1000:.0f})"
                    for g in got)
                print(f"{kind:<14} {how:<12} parse median {statistics.median(parse):5.2f} s | longest stall "
                      f"median {statistics.median(worst):6.0f} ms, max {max(worst):6.0f} ms | {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
