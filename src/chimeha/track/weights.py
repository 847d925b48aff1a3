"""Priority arithmetic for tracked objects (keepalived semantics).

* weight 0: the object failing puts the instance in FAULT (``reverse``: the
  object being OK does).
* weight > 0: added to the priority while the object is OK.
* weight < 0: added (i.e. subtracted) while the object has failed.
* ``reverse`` with a non-zero weight reverses the direction of the
  adjustment (``weight 10 reverse`` subtracts 10 while the object is OK).
* A non-owner's effective priority is clamped to 1..254, so tracking can
  never make an instance the address owner nor send priority 0.
* An owner (configured priority 255) keeps 255: weights are ignored, only
  weight-0 tracks (FAULT) affect it (keepalived.conf(5), ``priority``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from chimeha.vrrp.events import TrackSpec


@dataclass(frozen=True)
class Effective:
    """Result of combining a base priority with tracked-object states."""

    priority: int
    faults: tuple[str, ...]  # names of weight-0 tracks that force FAULT

    @property
    def fault(self) -> bool:
        return bool(self.faults)


def adjustment(track: TrackSpec, ok: bool) -> int:
    """Priority delta contributed by one weighted track in state ``ok``."""
    w = track.weight
    if w == 0:
        return 0
    if track.reverse:
        w = -w
    if track.weight > 0:
        return w if ok else 0
    return w if not ok else 0


def causes_fault(track: TrackSpec, ok: bool) -> bool:
    """True when a weight-0 track in state ``ok`` forces FAULT."""
    return track.weight == 0 and (ok if track.reverse else not ok)


def effective_priority(base: int, tracks: Iterable[TrackSpec], states: Mapping[str, bool]) -> Effective:
    """Combine ``base`` with each track's state (missing state = ``init_ok``)."""
    faults = []
    delta = 0
    for t in tracks:
        ok = states.get(t.name, t.init_ok)
        if causes_fault(t, ok):
            faults.append(f"{track_label(t)} {t.name}")
        delta += adjustment(t, ok)
    if base >= 255:
        return Effective(255, tuple(faults))
    return Effective(max(1, min(254, base + delta)), tuple(faults))


def track_label(t: TrackSpec) -> str:
    """The config keyword of a track: ``track_script``, ``track_interface``, ..."""
    return {"script": "track_script", "interface": "track_interface", "file": "track_file",
            "process": "track_process"}.get(t.kind, t.kind)
