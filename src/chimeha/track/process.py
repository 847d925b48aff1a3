"""vrrp_track_process: which processes match, and when the quorum is up (pure).

Theory of operation
-------------------
keepalived 2.2.7 (``keepalived/core/track_process.c``) keeps, per
``vrrp_track_process``, the set of live PIDs that match it and a
``have_quorum`` flag: up while ``quorum <= count <= quorum_max``. The count
moves one process at a time, on kernel events:

* a process appears by **exec** (or is found by a scan): counted, and a
  crossing of a quorum bound takes effect at once (a pending terminate timer is
  cancelled instead, so a restart within ``terminate_delay`` never shows);
* a tracked process **forks** (the child has the parent's command line):
  the child is counted, and a crossing takes effect after ``fork_delay``
  (or cancels a pending terminate timer);
* a tracked process **exits**: a crossing takes effect after
  ``terminate_delay`` (or cancels a pending fork timer);
* a tracked process **execs into something else** or changes its name: it is
  dropped, a crossing takes effect at once (and cancels a pending fork timer).

When a timer fires, the flag is re-evaluated from the count of that moment,
so a bounce inside the delay is never reported. :class:`ProcessQuorum` is that
state machine with time as an argument (``now``; ``next_deadline()`` /
``handle_timer(now)`` in the aioquic style); :class:`ProcessRule` is
keepalived's matching: an exact comparison (not a regex) of the 15-character
process name (``/proc/PID/comm``), or of ``argv[0]`` with ``full_command``,
then of the parameters byte by byte as ``param_match`` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: keepalived's ``quorum_max`` when none is configured (UINT_MAX).
NO_MAX = 2**32 - 1

PARAM_MATCH = ("none", "exact", "partial", "initial")


@dataclass(frozen=True)
class ProcessRule:
    """How one ``vrrp_track_process`` recognises its processes."""

    name: str
    params: bytes = b""  # each configured parameter followed by a NUL, as keepalived packs them
    param_match: str = "none"  # none | exact | partial | initial
    full_command: bool = False

    @classmethod
    def from_config(cls, process: tuple[str, ...] | list[str], param_match: str | None = None,
                    full_command: bool = False) -> "ProcessRule":
        """keepalived's reading: parameters after the name imply ``full_command`` and an exact match;
        ``param_match`` (with no word: exact) implies ``full_command`` too."""
        words = tuple(process)
        name, rest = (words[0], words[1:]) if words else ("", ())
        match = param_match or ("exact" if rest else "none")
        if match not in PARAM_MATCH:
            raise ValueError(f"unknown param_match {match!r}")
        full = full_command or bool(rest) or match != "none"
        return cls(name, b"".join(w.encode() + b"\0" for w in rest), match, full)

    def matches(self, comm: str, cmdline: bytes) -> bool:
        """Whether a process with name ``comm`` and raw ``/proc/PID/cmdline`` matches."""
        if self.full_command:
            argv0, _, args = cmdline.partition(b"\0")
            if argv0.decode(errors="surrogateescape") != self.name:
                return False
        else:
            if comm != self.name:
                return False
            args = cmdline.partition(b"\0")[2]
        if self.param_match == "none":
            return True
        return params_match(self.param_match, self.params, args)


def params_match(mode: str, want: bytes, got: bytes) -> bool:
    """keepalived's ``check_params``: ``want`` and ``got`` are NUL-terminated parameter lists."""
    if mode == "exact":
        return got == want
    if len(got) < len(want):
        return False
    if not want:
        return True
    if mode == "partial":  # the first n parameters are equal
        return got[: len(want)] == want
    # initial: as partial, but the last configured parameter may be a prefix of the process's
    return len(want) == 1 or got[: len(want) - 1] == want[:-1]


def quorum_ok(quorum: int, quorum_max: int, count: int) -> bool:
    """Whether ``count`` matching processes make a quorum."""
    return quorum <= count <= quorum_max


@dataclass
class ProcessQuorum:
    """The debounced up/down state of one ``vrrp_track_process`` (keepalived's ``have_quorum``).

    Feed it PIDs that appear (:meth:`add`) and go (:meth:`remove`) with the time;
    each call returns the new state when it just changed, else None. Arm one
    timer for :meth:`next_deadline` and call :meth:`handle_timer` when it passes.
    """

    quorum: int = 1
    quorum_max: int = NO_MAX
    fork_delay: float = 0.0
    terminate_delay: float = 0.0
    pids: set[int] = field(default_factory=set)
    up: bool = False
    fork_deadline: float | None = None
    terminate_deadline: float | None = None
    started: bool = False

    def start(self, pids, now: float) -> bool:
        """The initial scan: the state is the quorum of what is running, with no delay."""
        self.pids = set(pids)
        self.fork_deadline = self.terminate_deadline = None
        self.up = self._ok()
        self.started = True
        return self.up

    @property
    def count(self) -> int:
        return len(self.pids)

    def _ok(self) -> bool:
        return quorum_ok(self.quorum, self.quorum_max, len(self.pids))

    def _set(self, up: bool) -> bool | None:
        if up == self.up:
            return None
        self.up = up
        return up

    def add(self, pid: int, now: float, forked: bool = False) -> bool | None:
        """A matching process appeared: by exec or a scan, or (``forked``) as a tracked process's child."""
        if pid in self.pids:
            return None
        self.pids.add(pid)
        n = len(self.pids)
        if n != self.quorum and n != self.quorum_max + 1:
            return None  # no quorum bound crossed
        if self.terminate_deadline is not None:
            self.terminate_deadline = None  # the loss never took effect: nothing to report
            return self._set(self._ok())
        if forked and self.fork_delay > 0:
            if self.fork_deadline is None:
                self.fork_deadline = now + self.fork_delay
            return None
        return self._set(n == self.quorum)

    def remove(self, pid: int, now: float, exited: bool = True) -> bool | None:
        """A counted process went: it ``exited``, or it no longer matches (exec, name change)."""
        if pid not in self.pids:
            return None
        self.pids.discard(pid)
        n = len(self.pids)
        if n + 1 != self.quorum and n != self.quorum_max:
            return None
        if self.fork_deadline is not None:
            self.fork_deadline = None  # the gain never took effect
            return self._set(self._ok())
        if exited and self.terminate_delay > 0:
            if self.terminate_deadline is None:
                self.terminate_deadline = now + self.terminate_delay
            return None
        return self._set(self._ok())

    def resync(self, pids, now: float) -> bool | None:
        """Replace the PID set after lost events (keepalived's re-initialisation).

        The timers are cleared; a gained quorum takes effect at once, a lost one
        after ``terminate_delay``.
        """
        self.pids = set(pids)
        self.fork_deadline = self.terminate_deadline = None
        after = self._ok()
        if after == self.up:
            return None
        if not after and self.terminate_delay > 0:
            self.terminate_deadline = now + self.terminate_delay
            return None
        return self._set(after)

    def next_deadline(self) -> float | None:
        times = [t for t in (self.fork_deadline, self.terminate_deadline) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> bool | None:
        """Fire the timers that are due; the state becomes the quorum of the current count."""
        fired = False
        if self.fork_deadline is not None and now >= self.fork_deadline:
            self.fork_deadline, fired = None, True
        if self.terminate_deadline is not None and now >= self.terminate_deadline:
            self.terminate_deadline, fired = None, True
        return self._set(self._ok()) if fired else None

    def pending(self) -> str | None:
        """``"fork"`` / ``"terminate"`` while a delayed change waits, for status output."""
        if self.fork_deadline is not None:
            return "fork"
        if self.terminate_deadline is not None:
            return "terminate"
        return None
