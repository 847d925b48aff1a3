"""Fast failure detection: run a tracked script early when its answer has likely changed.

Theory of operation
-------------------
keepalived runs a ``vrrp_script`` every ``interval`` seconds, so a service
that dies just after a check is noticed up to one interval later (the seed:
``/usr/bin/pgrep chime-server`` every 2 s, median VIP move 1.0 s). chime-ha
keeps that schedule and adds *evidence*: when a process the script's answer
depends on exits, the script is run at once. The script's own exit status
still decides (its rise/fall counts are unchanged); an early run only moves
the next run forward, it never invents a result.

Which process is "the answer": the script's argv is read once
(:func:`probe_for`):

* process probes: ``pgrep [-x] [-f] [-i] PATTERN``, ``pidof NAME...``,
  ``killall -0 NAME`` (also wrapped in ``sh -c "..."`` when the string is one
  simple command). After every successful run the processes that the same
  rule matches are found in ``/proc`` (pgrep's rule: regex search on the
  15-character name, or on the command line with ``-f``);
* port probes: ``nc -z HOST PORT``, ``curl`` / ``wget`` of an ``http(s)://``
  URL, when HOST is this machine (``localhost``, ``127.0.0.0/8``, ``::1``,
  ``0.0.0.0``). The processes that hold the listening TCP socket on PORT are
  found from ``/proc/net/tcp{,6}`` (socket inode) and ``/proc/PID/fd``.

Each such process is watched through a pidfd (``os.pidfd_open``): the pidfd
becomes readable when the process exits, which the event loop reports at once
(``loop.add_reader``), in any PID namespace and without polling. When the last
watched process of a script is gone, the script is woken
(:meth:`ScriptTracker.wake`). The /proc scan runs only when a script has no
live watched process (after its first success, or after a wake), not on
every run, so its cost does not grow with the check rate.

Appearances are not watched: a service that starts is found by the script's
regular run, exactly as keepalived would (the early run exists for failures).

The switch: ``chime-ha run --fast-detect off`` (default on) turns it off; the
daemon then runs scripts on keepalived's schedule only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from chimeha.runtime.pidfd import ExitWatcher

log = logging.getLogger("chimeha.runtime.fast_detect")

SHELLS = ("sh", "bash", "dash", "ash", "zsh", "busybox")
_SHELL_META = re.compile(r"[|;&<>`$(){}*?\[\]]|\n")
# pgrep options that take an argument (procps-ng).
_PGREP_ARG_OPTS = set("dgGPsStuUF") | {"--delimiter", "--pgroup", "--group", "--parent", "--session",
                                      "--terminal", "--euid", "--uid", "--pidfile", "--signal", "--ns",
                                      "--nslist", "--runstates", "--env", "--cgroup"}
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


@dataclass(frozen=True)
class ProcessProbe:
    """The script succeeds while a process matching this rule exists."""

    pattern: str  # a regex (pgrep) or an exact name (pidof / killall)
    regex: bool = True
    full: bool = False  # match the whole command line (pgrep -f)
    exact: bool = False  # pgrep -x: the whole name / command line must match
    ignore_case: bool = False

    def describe(self) -> str:
        return f"process {self.pattern!r}"


@dataclass(frozen=True)
class PortProbe:
    """The script succeeds while something listens on local TCP ``port``."""

    port: int

    def describe(self) -> str:
        return f"local TCP port {self.port}"


Probe = ProcessProbe | PortProbe


def probe_for(argv: tuple[str, ...] | list[str]) -> Probe | None:
    """What ``argv``'s answer depends on, or None when chime-ha cannot tell (then: interval only)."""
    argv = tuple(argv)
    if not argv:
        return None
    prog = os.path.basename(argv[0])
    if prog in SHELLS and len(argv) >= 3 and argv[1] == "-c":
        inner = argv[2]
        if _SHELL_META.search(inner):
            return None
        try:
            words = shlex.split(inner)
        except ValueError:
            return None
        return probe_for(tuple(words)) if words and os.path.basename(words[0]) not in SHELLS else None
    if prog == "pgrep":
        return _pgrep(argv[1:])
    if prog == "pidof":
        names = [a for a in _drop_options(argv[1:], {"-o", "--omit-pid"}) if a]
        return ProcessProbe(names[0], regex=False) if len(names) == 1 else None
    if prog == "killall" and len(argv) >= 3 and argv[1] in ("-0", "-s0", "--signal=0"):
        names = [a for a in argv[2:] if not a.startswith("-")]
        return ProcessProbe(names[0], regex=False) if len(names) == 1 else None
    if prog in ("nc", "ncat", "netcat"):
        return _nc(argv[1:])
    if prog in ("curl", "wget"):
        return _url(argv[1:])
    return None


def _drop_options(args, with_arg: set[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in with_arg:
            skip = True
            continue
        if a.startswith("-"):
            continue
        out.append(a)
    return out


def _pgrep(args) -> ProcessProbe | None:
    full = exact = icase = False
    patterns, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a.startswith("--"):
            name = a.split("=", 1)[0]
            if name in _PGREP_ARG_OPTS and "=" not in a:
                skip = True
            full |= name == "--full"
            exact |= name == "--exact"
            icase |= name == "--ignore-case"
            continue
        if a.startswith("-") and len(a) > 1:
            for i, ch in enumerate(a[1:]):
                if ch in _PGREP_ARG_OPTS:
                    skip = i == len(a) - 2  # the argument is the next word
                    break
                full |= ch == "f"
                exact |= ch == "x"
                icase |= ch == "i"
            continue
        patterns.append(a)
    if len(patterns) != 1:
        return None
    try:
        re.compile(patterns[0])
    except re.error:
        return None
    return ProcessProbe(patterns[0], regex=True, full=full, exact=exact, ignore_case=icase)


def _is_local(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _nc(args) -> PortProbe | None:
    if not any(a.startswith("-") and "z" in a[1:] and not a.startswith("--") for a in args):
        return None
    words = _drop_options(args, {"-w", "-i", "-s", "-p", "-q", "-X", "-x", "-I", "-O", "-T", "-V", "-W"})
    if len(words) != 2 or not _is_local(words[0]) or not words[1].isdigit():
        return None
    port = int(words[1])
    return PortProbe(port) if 0 < port < 65536 else None


def _url(args) -> PortProbe | None:
    urls = [a for a in args if "://" in a and not a.startswith("-")]
    if len(urls) != 1:
        return None
    try:
        u = urlsplit(urls[0])
        port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    except ValueError:
        return None
    if port is None or u.hostname is None or not _is_local(u.hostname):
        return None
    return PortProbe(port)


# ------------------------------------------------------------------ finding the processes
def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def matching_pids(probe: ProcessProbe, proc: str = "/proc", exclude: frozenset[int] = frozenset()) -> set[int]:
    """PIDs (as ``proc`` shows them) that ``probe``'s program would find."""
    flags = re.IGNORECASE if probe.ignore_case else 0
    rx = re.compile(probe.pattern, flags) if probe.regex else None
    out: set[int] = set()
    for entry in os.listdir(proc):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        comm_b = _read(f"{proc}/{entry}/comm")
        if comm_b is None:
            continue
        comm = comm_b.decode(errors="replace").rstrip("\n")
        if rx is None:  # pidof / killall: the program's name or argv[0]'s basename
            if comm == probe.pattern[:15]:
                out.add(int(entry))
                continue
            cmd = _read(f"{proc}/{entry}/cmdline") or b""
            argv0 = cmd.split(b"\0", 1)[0].decode(errors="replace")
            if argv0 and os.path.basename(argv0) == probe.pattern:
                out.add(int(entry))
            continue
        if probe.full:
            cmd = _read(f"{proc}/{entry}/cmdline") or b""
            text = cmd.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or comm
        else:
            text = comm
        hit = rx.fullmatch(text) if probe.exact else rx.search(text)
        if hit:
            out.add(int(entry))
    return out


def listening_inodes(port: int, proc: str = "/proc") -> set[int]:
    """Socket inodes of TCP listeners on ``port`` (any address) in this network namespace."""
    out: set[int] = set()
    want = f":{port:04X}"
    for name in ("tcp", "tcp6"):
        data = _read(f"{proc}/net/{name}")
        if not data:
            continue
        for line in data.decode(errors="replace").splitlines()[1:]:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and f[1].endswith(want):
                out.add(int(f[9]))
    return out


def socket_owners(inodes: set[int], proc: str = "/proc") -> set[int]:
    """PIDs that hold one of the socket ``inodes`` open."""
    if not inodes:
        return set()
    targets = {f"socket:[{i}]" for i in inodes}
    out: set[int] = set()
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        fd_dir = f"{proc}/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in targets:
                    out.add(int(entry))
                    break
            except OSError:
                continue
    return out


def pids_for(probe: Probe, proc: str = "/proc", exclude: frozenset[int] = frozenset()) -> set[int]:
    """The processes whose exit would change ``probe``'s answer."""
    if isinstance(probe, ProcessProbe):
        return matching_pids(probe, proc, exclude)
    return socket_owners(listening_inodes(probe.port, proc), proc) - set(exclude)


# ------------------------------------------------------------------ the watcher
class _Watch:
    """The pidfds of one tracker."""

    def __init__(self, tracker, probe: Probe, on_exit):
        self.tracker = tracker
        self.probe = probe
        self.exits = ExitWatcher(on_exit)
        self.wakes = 0


class FastDetector:
    """Wakes :class:`~chimeha.runtime.scripts.ScriptTracker` s when a process they depend on exits.

    ``FastDetector(trackers).start()`` inside the running loop; ``stop()``
    closes every pidfd. Trackers whose script is not understood are left on
    their interval. ``watched()`` tells, per script, what is watched.
    """

    def __init__(self, trackers, *, enabled: bool = True, proc: str = "/proc"):
        self.enabled = enabled
        self.proc = proc
        self._watches: dict[str, _Watch] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exclude = frozenset({os.getpid()})
        for tr in (trackers.values() if isinstance(trackers, dict) else trackers):
            probe = probe_for(tr.argv) if enabled and not getattr(tr, "refused", None) else None
            if probe is not None:
                self._watches[tr.name] = _Watch(tr, probe, lambda pid, n=tr.name: self._exited(n, pid))

    def start(self) -> None:
        if not self._watches:
            return
        self._loop = asyncio.get_running_loop()
        for w in self._watches.values():
            w.tracker.result_hooks.append(lambda res, w=w: self._after_run(w, res))
            log.debug("vrrp_script %s: fast detection watches %s", w.tracker.name, w.probe.describe())

    def stop(self) -> None:
        for w in self._watches.values():
            self._close(w)
        self._watches = {}

    def watched(self) -> dict[str, dict]:
        return {name: {"probe": w.probe.describe(), "pids": sorted(w.exits.pids), "wakes": w.wakes}
                for name, w in self._watches.items()}

    def _after_run(self, w: _Watch, res) -> None:
        if self._watches.get(w.tracker.name) is not w:
            return
        if not res.ok:
            self._close(w)  # the answer is already "down": nothing to hurry
            return
        if w.exits:
            return  # still watching live processes of the last scan
        for pid in pids_for(w.probe, self.proc, self._exclude):
            try:
                w.exits.watch(pid)
            except OSError as exc:  # ENOSYS on an old kernel: stay on the interval
                log.info("fast detection off for vrrp_script %s: pidfd_open: %s", w.tracker.name, exc)
                self._close(w)
                self._watches.pop(w.tracker.name, None)
                return

    def _exited(self, name: str, pid: int) -> None:
        w = self._watches.get(name)
        if w is not None and not w.exits:
            w.wakes += 1
            log.debug("vrrp_script %s: %s exited; running the check now", w.tracker.name, w.probe.describe())
            w.tracker.wake()

    def _close(self, w: _Watch) -> None:
        w.exits.close()
