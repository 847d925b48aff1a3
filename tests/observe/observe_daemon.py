"""Run the real runtime ``Daemon`` with the real ``Observer``: a test launcher.

The same composition as ``chime-ha run --control ... --journal ... --metrics
...`` (run.py calls ``chimeha.observe.attach_running``), plus one thing the
CLI has no option for: the keepalived dump paths, which this puts in a
per-node directory so that two nodes (and other tests) never share
/tmp/keepalived.*. test_observe_system.py also runs the real CLI end to end.

    python observe_daemon.py CONFIG --control PATH --journal PATH --metrics ADDR --dump-dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys


async def main(args: argparse.Namespace) -> int:
    from chimeha import observe
    from chimeha.config import load
    from chimeha.observe.dumps import DumpPaths
    from chimeha.runtime.daemon import Daemon

    result = load(args.config)
    for d in result.diagnostics:
        print(d, file=sys.stderr)
    if not result.ok or result.config is None:
        return 2
    daemon = Daemon(args.config, result.config)
    d = args.dump_dir
    obs = observe.attach(daemon, args.control, args.metrics, args.journal, watch_interval=0.2,
                         dump_paths=DumpPaths(f"{d}/keepalived.data", f"{d}/keepalived.stats", f"{d}/keepalived.json"))
    obs.hook()  # before start, so the startup transitions are journaled too
    await obs.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(obs.reload()))
    try:
        await daemon.start()
        obs.ready()
        print(f"ready pid {os.getpid()}", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await daemon.stop()
        await obs.close()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--control", required=True)
    p.add_argument("--journal", required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--dump-dir", required=True)
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main(p.parse_args())))
