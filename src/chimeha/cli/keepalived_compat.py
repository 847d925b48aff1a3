"""keepalived's own command line: ``chime-ha keepalived [KEEPALIVED OPTIONS]``.

Also what runs when chime-ha is invoked under the name ``keepalived`` (a
symlink), so that existing units, wrappers and container entrypoints work by
renaming the binary. Every option of keepalived 2.2.7's ``--help`` is
accepted; each either acts, has no effect here (and says why), or is not
implemented (and says so) - see ``OPTIONS`` and docs/migration.md.

Exit statuses follow keepalived 2.2.7 (measured, tests/operators): 0 ok, 1 bad
command line, and for ``-t``: 2 a fatal parse error, 5 any configuration
problem keepalived logs, 6 only script-security problems, 4 a missing file
with ``-e``; a missing file without ``-e`` is 0, as in keepalived.
chime-ha's own ``run`` options may follow ``--`` (an extension).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys

KEEPALIVED_VERSION = "2.2.7"
DEFAULT_PID_FILE = "/run/keepalived.pid"
EXIT_USAGE, EXIT_FATAL, EXIT_CONFIG, EXIT_CONFIG_TEST, EXIT_SECURITY = 1, 2, 4, 5, 6
# chime-ha diagnostic codes for which keepalived -t stops parsing (exit 2, measured).
FATAL_CODES = frozenset({"missing-parameter", "bare-weight"})
SECURITY_CODES = frozenset({"script-security"})
# keepalived --signum names -> signal numbers (keepalived 2.2.7 on Linux, measured).
SIGNUMS = {"STOP": 15, "RELOAD": 1, "DATA": 10, "STATS": 12, "STATS_CLEAR": 63, "JSON": 36}

# Options that are accepted with no effect here, and why (printed when used).
NO_EFFECT = {
    "all": "chime-ha runs one process, there are no child processes to force",
    "no_bfd": "BFD runs inside the chime-ha process when configured; there is no BFD child to disable",
    "log_detail": "chime-ha always logs the detailed reasons of its transitions",
    "dont_respawn": "chime-ha runs one process; restarts are left to systemd's Restart=",
    "core_dump": "a Python process; tracebacks are logged instead of core dumps",
    "core_dump_pattern": "a Python process; /proc/sys/kernel/core_pattern is left alone",
    "address_monitoring": "chime-ha follows address changes through netlink only for its own VIPs",
}
NOT_IMPLEMENTED = {
    "release_vips": "-X (drop VIPs on the transition a signal causes)",
    "dont_release_vrrp": "-V (keep VIPs when stopping): chime-ha always resigns and removes them",
    "dont_release_ipvs": "-I (keep the IPVS topology when stopping)",
    "snmp": "-x (the SNMP subagent)",
    "snmp_agent_socket": "-A (the SNMP master agent socket)",
    "namespace": "-s (run in a named network namespace): use `ip netns exec NAME chime-ha ...`",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # keepalived exits 1 on a bad command line, argparse 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"keepalived: {message}\n")


def build_parser(prog: str = "keepalived") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, add_help=False,
                description="chime-ha with keepalived 2.2.7's command line (a drop-in for the keepalived binary).")
    a = p.add_argument
    a("-f", "--use-file", dest="file", default="/etc/keepalived/keepalived.conf", metavar="FILE",
      help="use the specified configuration file (default: %(default)s)")
    a("-P", "--vrrp", action="store_true", help="only VRRP (chime-ha: --dataplane none)")
    a("-C", "--check", action="store_true", help="only the health checkers and virtual servers, no VRRP")
    a("-B", "--no_bfd", action="store_true", help="no effect (see docs/migration.md)")
    a("--all", action="store_true", help="no effect")
    a("-l", "--log-console", action="store_true", help="log to the console (stderr)")
    a("-D", "--log-detail", action="store_true", help="no effect: reasons are always logged")
    a("-S", "--log-facility", metavar="FACILITY", default="daemon",
      help="syslog facility: 0-7 (local0-7), local0-7, user or daemon (default)")
    a("-G", "--no-syslog", action="store_true", help="do not log via syslog")
    a("-u", "--umask", metavar="MASK", help="umask for file creation (numeric)")
    a("-X", "--release-vips", action="store_true", help="not implemented")
    a("-V", "--dont-release-vrrp", action="store_true", help="not implemented")
    a("-I", "--dont-release-ipvs", action="store_true", help="not implemented")
    a("-R", "--dont-respawn", action="store_true", help="no effect")
    a("-n", "--dont-fork", action="store_true", help="stay in the foreground")
    a("-d", "--dump-conf", action="store_true", help="log the configuration as chime-ha read it")
    a("-p", "--pid", dest="pid_file", metavar="FILE", help=f"PID file (default: {DEFAULT_PID_FILE})")
    a("-r", "--vrrp_pid", dest="vrrp_pid_file", metavar="FILE",
      help="PID file of the VRRP process (chime-ha: the same single process)")
    a("-c", "--checkers_pid", dest="checkers_pid_file", metavar="FILE",
      help="PID file of the checkers process (chime-ha: the same single process)")
    a("-b", "--bfd_pid", dest="bfd_pid_file", metavar="FILE", help="PID file of the BFD process (the same process)")
    a("-T", "--genhash", action="store_true", help="genhash mode: the remaining arguments go to `chime-ha genhash`")
    a("-a", "--address-monitoring", action="store_true", help="no effect")
    a("-x", "--snmp", action="store_true", help="not implemented")
    a("-A", "--snmp-agent-socket", metavar="FILE", help="not implemented")
    a("-s", "--namespace", metavar="NAME", help="not implemented")
    a("-m", "--core-dump", action="store_true", help="no effect")
    a("-M", "--core-dump-pattern", nargs="?", const="core", metavar="PATN", help="no effect")
    a("-e", "--all-config", action="store_true", help="a missing configuration file is an error")
    a("-i", "--config-id", metavar="ID", help="config-id for '@' conditional lines")
    a("--signum", metavar="SIGFUNC", help="print the signal number of STOP, RELOAD, DATA, STATS, STATS_CLEAR, JSON")
    a("-t", "--config-test", nargs="?", const="-", metavar="LOG_FILE",
      help="check the configuration, report to stderr (or LOG_FILE), exit with keepalived's status")
    a("-v", "--version", action="store_true", help="display the version")
    a("-h", "--help", action="store_true", help="display this help message")
    return p


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("keepalived", add_help=False, prefix_chars="\0",
                              help="run with keepalived's command line (also when invoked as `keepalived`)",
                              description="chime-ha keepalived [keepalived options]: see `chime-ha keepalived -h`.")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: main(args.argv, prog="chime-ha keepalived"))


def main(argv: list[str], prog: str = "keepalived", *, chime) -> int:
    """Run keepalived's command line ``argv`` (without argv[0]); returns the exit status.

    ``chime`` is the ``chimeha.cli`` package (its ``main``, ``build_parser`` and ``run``
    module), handed in by the caller so that this module does not import its own parent.
    """
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = build_parser(prog)
    if "-T" in argv[:1] or "--genhash" in argv[:1]:
        return chime.main(["genhash", *argv[1:]])
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if ns.help:
        parser.print_help(sys.stdout)
        return 0
    if ns.version:
        print(f"Keepalived v{KEEPALIVED_VERSION} compatible (chime-ha {__import__('chimeha').__version__})",
              file=sys.stderr)
        return 0
    if ns.signum is not None:
        num = SIGNUMS.get(ns.signum.upper())
        if num is None:
            print(f"Unknown sigfunc {ns.signum}", file=sys.stderr)
            return EXIT_USAGE
        print(num)
        return 0
    if ns.config_test is not None:
        return config_test(ns)
    return daemon(ns, extra, chime)


# ------------------------------------------------------------------ -t
def test_status(diagnostics) -> int:
    """keepalived -t's exit status for a list of chime-ha diagnostics."""
    from chimeha.config.validate import KEEPALIVED_REPORTS

    codes = {d.code for d in diagnostics}
    if codes & FATAL_CODES:
        return EXIT_FATAL
    # A script-security finding outranks the other reports (measured: an unknown keyword plus a
    # root script without enable_script_security exits 6, not 5); a fatal one ends the test first.
    if codes & SECURITY_CODES:
        return EXIT_SECURITY
    if any(d.severity == "error" for d in diagnostics) or codes & KEEPALIVED_REPORTS:
        return EXIT_CONFIG_TEST
    return 0


def config_test(ns) -> int:
    out = sys.stderr if ns.config_test in ("-", "") else None
    try:
        if out is None:
            out = open(ns.config_test, "a")
    except OSError as exc:
        print(f"keepalived: -t {ns.config_test}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if not os.path.exists(ns.file):
            print(f"Config files missing '{ns.file}'.", file=out)
            return EXIT_CONFIG if ns.all_config else 0
        from chimeha.config import load

        result = load(ns.file, config_id=ns.config_id)
        for d in result.diagnostics:
            print(d, file=out)
        return test_status(result.diagnostics)
    finally:
        if out is not sys.stderr:
            out.close()


# ------------------------------------------------------------------ daemon
def run_argv(ns, extra: list[str]) -> list[str]:
    """The ``chime-ha run`` arguments that keepalived options ``ns`` stand for."""
    argv = ["run", "-f", ns.file]
    if ns.vrrp:
        argv += ["--dataplane", "none"]
    return argv + list(extra)


def notes(ns) -> list[str]:
    """One warning per option used that has no effect or is not implemented here."""
    out = []
    for dest, why in NO_EFFECT.items():
        if getattr(ns, dest, None):
            out.append(f"option --{dest.replace('_', '-')}: no-effect: {why}")
    for dest, what in NOT_IMPLEMENTED.items():
        if getattr(ns, dest, None):
            out.append(f"option {what}: not-implemented in chime-ha (ignored)")
    if ns.config_id:
        out.append("option -i (config-id) outside -t: not-implemented; the daemon uses the host name's first label")
    return out


def _syslog_facility(name: str) -> int:
    h = logging.handlers.SysLogHandler
    name = name.lower()
    if name.isdigit() and 0 <= int(name) <= 7:
        name = f"local{name}"
    table = {"user": h.LOG_USER, "daemon": h.LOG_DAEMON, **{f"local{i}": getattr(h, f"LOG_LOCAL{i}") for i in range(8)}}
    if name not in table:
        raise ValueError(name)
    return table[name]


def daemon(ns, extra: list[str], chime) -> int:
    chime_parser, run_mod = chime.build_parser, chime.run_module()

    if ns.vrrp and ns.check:
        print("keepalived: --vrrp and --check together: nothing would run", file=sys.stderr)
        return EXIT_USAGE
    try:
        facility = _syslog_facility(ns.log_facility)
        umask = int(ns.umask, 0) if ns.umask else None
    except ValueError:
        print(f"keepalived: invalid -S {ns.log_facility!r} or -u {ns.umask!r}", file=sys.stderr)
        return EXIT_USAGE
    for line in notes(ns):
        print(f"keepalived: {line}", file=sys.stderr)
    if ns.check:  # the checker process alone: virtual servers and health checks, no VRRP
        from chimeha.runtime.lvs_manager import standalone_main as lvs_main
        runner = lambda: lvs_main([ns.file, *extra])  # noqa: E731
    else:
        try:
            args = chime_parser().parse_args(run_argv(ns, extra))
        except SystemExit as exc:
            return EXIT_USAGE if exc.code else 0
        runner = lambda: run_mod.run(args)  # noqa: E731
    if umask is not None:
        os.umask(umask)
    if not ns.dont_fork:
        _daemonize()
    pid_files = [f for f in (ns.pid_file or DEFAULT_PID_FILE, ns.vrrp_pid_file, ns.checkers_pid_file,
                             ns.bfd_pid_file) if f]
    # the main PID file last, each one whole at once (rename): a script that waits for the main
    # file and then reads the others finds them complete
    for path in reversed(pid_files):
        _write_pid_file(path)
    syslog = None if (ns.no_syslog or not os.path.exists("/dev/log")) else (facility, not ns.log_console)
    try:
        if syslog or not ns.log_console:
            _log_also_to_syslog(run_mod, syslog, console=ns.log_console or ns.dont_fork)
        if ns.dump_conf:
            _dump_conf(ns.file)
        return int(runner() or 0)
    finally:
        for path in pid_files:
            try:
                with open(path) as fh:
                    mine = fh.read().strip() == str(os.getpid())
                if mine:
                    os.unlink(path)
            except OSError:
                pass


def _write_pid_file(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _daemonize() -> None:
    """keepalived without -n: the parent returns at once, the daemon runs detached."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _log_also_to_syslog(run_mod, syslog, console: bool) -> None:
    """Wrap ``chime-ha run``'s logging set-up: add syslog (-S), drop the console unless -l/-n."""
    original = run_mod.setup_logging

    def setup(level: str) -> None:
        original(level)
        root = logging.getLogger()
        if not console:
            root.handlers[:] = []
        if syslog:
            handler = logging.handlers.SysLogHandler("/dev/log", facility=syslog[0])
            handler.setFormatter(logging.Formatter("chime-ha[%(process)d]: %(levelname)s %(name)s: %(message)s"))
            root.addHandler(handler)

    run_mod.setup_logging = setup


def _dump_conf(path: str) -> None:
    from chimeha.config import load, render

    result = load(path)
    if result.config is not None:
        for line in render(result.config).splitlines():
            print(f"keepalived -d: {line}", file=sys.stderr)
