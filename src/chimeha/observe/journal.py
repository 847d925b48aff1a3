"""The transition journal: who changed state, when, and why.

Every VRRP state change (the core's ``StateChanged(instance, old, new, reason,
at)``) and every split-brain start and end becomes one entry, kept in a bounded
in-memory ring for ``chime-ha journal`` and the status page, and appended as
one JSON object per line to a file so the history survives a restart. On start
the tail of that file is read back, so the ring and the sequence numbers carry
on where the previous run stopped.

An entry is a flat JSON object::

    {"seq": 7, "at": 1795725799.585, "kind": "transition", "instance": "VI_1",
     "from": "BACKUP", "to": "MASTER",
     "reason": "no advertisement from 192.168.231.11 for 3.008 s"}

``kind`` is ``transition``, ``split_brain`` (``to`` is ``SPLIT_BRAIN``, ``peer``
names the other master; one entry per rival master the core reports, the
first opens the episode), ``split_brain_resolved`` (once per episode), ``priority`` (``from`` and
``to`` are the old and new effective priority) or ``reload``. A BACKUP ->
MASTER transition carries ``failover_seconds`` when the core measured it. ``at`` is
wall-clock epoch seconds. Writing the file is best effort: a full disk or a
missing directory is logged once and the in-memory journal keeps working.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from typing import Any, Callable, Iterable

from chimeha.vrrp.events import State, StateChanged

log = logging.getLogger(__name__)

DEFAULT_JOURNAL_PATH = "/var/lib/chime-ha/journal.jsonl"
KINDS = ("transition", "split_brain", "split_brain_resolved", "priority", "reload")

# The vrrp core runs on the monotonic clock (the event loop's time). Epoch
# seconds are above 1e9 since 2001; monotonic readings are seconds since boot.
_EPOCH_THRESHOLD = 1e9


def to_wall_clock(at: float | None) -> float:
    """Convert an event time to epoch seconds (monotonic times are shifted)."""
    now = time.time()
    if at is None:
        return now
    at = float(at)
    if at >= _EPOCH_THRESHOLD:
        return at
    return now - (time.monotonic() - at)


def read_file(path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Entries from a journal file, oldest first; unreadable lines are skipped.

    Returns the last ``limit`` entries when given. A missing file is empty.
    """
    kept: deque[dict[str, Any]] = deque(maxlen=limit if limit and limit > 0 else None)
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash
                if isinstance(entry, dict):
                    kept.append(entry)
    except FileNotFoundError:
        return []
    return list(kept)


class Journal:
    """Bounded in-memory journal, mirrored to a JSON-lines file.

    ``path=None`` keeps it in memory only. Listeners registered with
    :meth:`subscribe` are called synchronously with every new entry (the
    control socket uses this for ``journal --follow``).
    """

    def __init__(self, path: str | None = DEFAULT_JOURNAL_PATH, maxlen: int = 1000):
        self.path = path
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._seq = 0
        self._write_failed = False
        if path:
            try:
                previous = read_file(path, maxlen)
            except OSError as exc:
                log.warning("cannot read journal %s: %s (starting empty)", path, exc)
                previous = []
            self._entries.extend(previous)
            if self._entries:
                self._seq = max(seq_of(e) for e in self._entries)

    # -- writing ---------------------------------------------------------
    def append(self, kind: str, instance: str, old: str, new: str, reason: str,
               at: float | None = None, **extra: Any) -> dict[str, Any]:
        """Add one entry (``at`` may be monotonic or epoch) and return it."""
        self._seq += 1
        entry: dict[str, Any] = {
            "seq": self._seq,
            "at": round(to_wall_clock(at), 6),
            "kind": kind,
            "instance": str(instance),
            "from": str(old),
            "to": str(new),
            "reason": str(reason),
        }
        entry.update({k: v for k, v in extra.items() if v is not None})
        self._entries.append(entry)
        self._write(entry)
        for listener in list(self._listeners):
            try:
                listener(entry)
            except Exception:  # a broken follower must not stop the journal
                log.exception("journal listener failed")
        return entry

    def record(self, event: StateChanged) -> dict[str, Any]:
        """Journal the core's ``StateChanged`` (with the failover duration it measured, if any)."""
        return self.append("transition", event.instance, state_name(event.old), state_name(event.new),
                           event.reason, event.at, failover_seconds=event.failover)

    def _write(self, entry: dict[str, Any]) -> None:
        if not self.path:
            return
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, mode=0o755, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._write_failed = False
        except OSError as exc:
            if not self._write_failed:
                log.warning("cannot append to journal %s: %s (keeping it in memory)", self.path, exc)
            self._write_failed = True

    # -- reading ---------------------------------------------------------
    def entries(self, limit: int | None = None, instance: str | None = None,
                after_seq: int | None = None) -> list[dict[str, Any]]:
        """Entries oldest first, optionally only one instance's, only newer than ``after_seq``, last ``limit``."""
        selected: Iterable[dict[str, Any]] = self._entries
        if instance:
            selected = (e for e in selected if e.get("instance") == instance)
        if after_seq is not None:
            selected = (e for e in selected if seq_of(e) > after_seq)
        out = list(selected)
        if limit is not None and limit >= 0:
            out = out[-limit:] if limit else []
        return out

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def subscribers(self) -> int:
        """How many listeners are subscribed (followers included)."""
        return len(self._listeners)

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``listener(entry)`` for every new entry; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
        return unsubscribe


def seq_of(entry: dict[str, Any]) -> int:
    """The entry's sequence number; 0 for a hand-edited or foreign line."""
    try:
        return int(entry.get("seq", 0) or 0)
    except (TypeError, ValueError):
        return 0


def state_name(state: State | str) -> str:
    """A core state (or a state word) as the journal spells it: upper case."""
    return str(state).upper()


def format_entry(entry: dict[str, Any]) -> str:
    """One journal entry as a line an operator reads (local time, ms precision)."""
    at = entry.get("at")
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(at)))
        stamp += f".{int(round((float(at) % 1) * 1000)) % 1000:03d}"
    except (TypeError, ValueError, OverflowError):
        stamp = "????-??-?? ??:??:??.???"
    kind = entry.get("kind", "transition")
    inst = entry.get("instance", "?")
    reason = entry.get("reason", "")
    if kind == "split_brain":
        what = f"SPLIT BRAIN with {entry.get('peer', '?')}"
    elif kind == "split_brain_resolved":
        what = "split brain resolved"
    elif kind == "reload":
        what = "reload"
    elif kind == "priority":
        what = f"priority {entry.get('from', '?')} -> {entry.get('to', '?')}"
    else:
        what = f"{entry.get('from', '?')} -> {entry.get('to', '?')}"
    extra = ""
    if entry.get("failover_seconds") is not None:
        extra = f" (failover {float(entry['failover_seconds']):.3f} s)"
    return f"{stamp}  {inst}  {what}: {reason}{extra}"
