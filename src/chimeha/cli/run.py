"""``chime-ha run``: the VRRP daemon in the foreground, logging to stderr."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from chimeha.cli.argtypes import whole_number
from chimeha.lvs.catalog import DATAPLANES  # noqa: E402  (one declaration per data plane)
from chimeha.lvs.backends.nft import SNAT_TO  # noqa: E402
DEFAULT_CONTROL_PATH = "/run/chime-ha/control.sock"  # chimeha.observe.control's default


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run the VRRP daemon in the foreground",
                       description="Run the VRRP instances (and virtual servers) of a keepalived.conf "
                                   "in the foreground. SIGTERM stops (priority 0, VIPs removed); "
                                   "SIGHUP reloads the file.")
    p.add_argument("-f", "--use-file", dest="file", default="/etc/keepalived/keepalived.conf",
                   help="configuration file (default: %(default)s)")
    p.add_argument("--control", metavar="PATH", default=DEFAULT_CONTROL_PATH,
                   help="control socket for chime-ha status/journal/reload (default: %(default)s; "
                        "'none' disables it)")
    p.add_argument("--control-max-connections", metavar="N", type=whole_number(1), default=64,
                   help="control connections served at once; when full the one idle longest is closed, "
                        "and a connection idle 5 s without a request is closed (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="log level (default: %(default)s)")
    p.add_argument("--dataplane", default="auto", choices=DATAPLANES,
                   help="virtual-server data plane (default: %(default)s)")
    p.add_argument("--snat-to", default=None, choices=SNAT_TO,
                   help="nft data plane source NAT address: the outgoing interface's (masquerade), the "
                        "connection's VIP, or auto: the VIP where the real server's subnet holds it, so the "
                        "real servers' TIME_WAIT for the director's own connections never meets NATed ones "
                        "(default: vip with global_defs lvs_sync_daemon, else auto)")
    p.add_argument("--proxy-workers", metavar="N|auto", default="1", type=_proxy_workers,
                   help="userspace proxy data plane: relay processes (default 1; auto: one per core, at most "
                        "4); with more than one, rr/wrr/sh/dh/mh services without persistence run in every "
                        "process (SO_REUSEPORT) and each process schedules on its own")
    p.add_argument("--journal", metavar="PATH", default=None,
                   help="transition journal file (default: none, kept in memory)")
    p.add_argument("--metrics", metavar="ADDR", default=None,
                   help="serve /metrics and the status page on ADDR, e.g. 127.0.0.1:9650 (default: off)")
    p.add_argument("--pid-file", metavar="PATH", default=None, help="write the daemon's PID here")
    p.add_argument("--dump-dir", metavar="DIR", default=None,
                   help="write the SIGUSR1/SIGUSR2/SIGRTMIN+2 dumps (keepalived.data, keepalived.stats, "
                        "keepalived.json) into DIR, an existing directory (default: /tmp, as keepalived)")
    p.add_argument("--fast-detect", default="on", choices=("on", "off"),
                   help="run a pgrep/pidof/nc -z/curl-localhost style vrrp_script at once when the "
                        "process it found exits, besides its interval (default: %(default)s; "
                        "off: keepalived's schedule only)")
    p.set_defaults(func=run)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d chime-ha[%(process)d] %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    # pyroute2 logs every netlink message at debug level: far too much noise.
    handler.addFilter(lambda rec: not (rec.name.startswith("pyroute2") and rec.levelno < logging.INFO))


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    log = logging.getLogger("chimeha.run")
    if not os.path.exists(args.file):
        log.error("%s: no such file", args.file)
        return 2
    if args.dump_dir is not None and not os.path.isdir(args.dump_dir):
        log.error("--dump-dir %s: %s", args.dump_dir,
                  "not a directory" if os.path.exists(args.dump_dir) else "no such directory")
        return 2
    from chimeha.config import load

    result = load(args.file)
    for d in result.diagnostics:
        (log.error if d.severity == "error" else log.warning)("%s", d)
    if not result.ok or result.config is None:
        log.error("%s: configuration has errors; not starting", args.file)
        return 2
    # The default asyncio loop, not uvloop: uvloop cannot open netlink
    # datagram endpoints, which pyroute2 (the IPVS data plane) needs.
    try:
        return asyncio.run(_main(args, result.config))
    except KeyboardInterrupt:
        return 130


def _proxy_workers(value: str) -> str:
    if value == "auto" or (value.isdigit() and 1 <= int(value) <= 64):
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: a number of processes (1-64) or auto")


def _resolve_workers(value: str) -> int:
    if value != "auto":
        return int(value)
    from chimeha.lvs.backends.proxy_workers import default_workers  # multiprocessing: only when asked

    return default_workers()


async def _main(args, config) -> int:
    from chimeha.runtime.daemon import Daemon, DaemonError

    log = logging.getLogger("chimeha.run")
    daemon = Daemon(args.file, config, dataplane=None if args.dataplane == "auto" else args.dataplane,
                    fast_detect=getattr(args, "fast_detect", "on") == "on",
                    lvs_options={"snat_to": getattr(args, "snat_to", None),
                                 "proxy_workers": _resolve_workers(getattr(args, "proxy_workers", "1"))})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloading: set[asyncio.Task] = set()

    def on_hup() -> None:
        log.info("SIGHUP: reloading %s", args.file)
        t = loop.create_task(daemon.reload())
        reloading.add(t)
        t.add_done_callback(reloading.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    # Observers first, so the journal sees the very first transitions.
    extras = await _start_observe(daemon, args, log)
    extras += _start_snmp(daemon, config)
    from chimeha.runtime.lifecycle import run_lifecycle

    await run_lifecycle("startup", config)  # keepalived: before any instance starts
    try:
        await daemon.start()
    except DaemonError as exc:
        log.error("%s", exc)
        await daemon.stop()
        await run_lifecycle("shutdown", daemon.config or config)
        for close in extras:
            await close()
        return 1
    if args.pid_file:
        with open(args.pid_file, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        for t in list(reloading):
            await t
        await daemon.stop()
        await run_lifecycle("shutdown", daemon.config)  # after priority 0, VIPs and virtual servers are gone
        for close in extras:
            try:
                await close()
            except Exception:
                log.exception("shutdown of an observer failed")
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass
    return 0


async def _start_observe(daemon, args, log) -> list:
    """Attach chimeha.observe (journal, control socket, metrics)."""
    from chimeha.observe import attach_running

    try:
        control = None if args.control in ("", "none") else args.control
        options = {"control_max_connections": args.control_max_connections}
        if args.dump_dir is not None:
            options["dump_paths"] = dump_paths(args.dump_dir)
        observer = await attach_running(daemon, control_path=control, metrics_addr=args.metrics,
                                        journal_path=args.journal, **options)
    except Exception as exc:  # status tooling must never keep VRRP from running
        log.error("observability could not start: %s", exc)
        return []
    return [observer.close]


def _start_snmp(daemon, config) -> list:
    """The AgentX subagent (chimeha.snmp) when global_defs enables an SNMP MIB; it retries on its own."""
    from chimeha.snmp.subagent import from_config

    agent = from_config(daemon, config)
    if agent is None:
        return []
    agent.start()
    return [agent.close]


def dump_paths(directory: str):
    """keepalived's three dump files, in ``directory`` instead of /tmp."""
    from chimeha.observe.dumps import DATA_PATH, JSON_PATH, STATS_PATH, DumpPaths

    def where(default: str) -> str:
        return os.path.join(os.path.abspath(directory), os.path.basename(default))

    return DumpPaths(data=where(DATA_PATH), stats=where(STATS_PATH), json=where(JSON_PATH))
