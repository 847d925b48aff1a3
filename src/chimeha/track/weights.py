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
* ``track_file`` with a non-zero weight scales (keepalived.conf(5),
  "track_file"): the file's value ``v`` contributes ``v * weight`` (negated by
  ``reverse``). A contribution below -253 puts the instance in FAULT; one above
  253 counts as 253 (the man page only defines -253..253; any base priority
  plus 253 reaches the 254 clamp anyway). A contribution that drives the sum
  to 0 or below does *not* fault: the man page says the result is limited to
  1..254. With weight 0 the value only means OK (0) / FAULT (non-zero).
  Without a known value (callers that only report OK/failed) a file track
  falls back to the OK/failed rules above. An owner ignores a scaling file
  like any weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from chimeha.track.spec import TrackSpec


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


# keepalived.conf(5), track_file: "if the result is less than -253 ... fault
# state"; results in -253..253 are added to the priority.
FILE_FAULT_BELOW = -253
FILE_MAX_CONTRIBUTION = 253


def scales(track: TrackSpec) -> bool:
    """True when ``track`` is a track_file whose value is multiplied by its weight."""
    return track.kind == "file" and track.weight != 0


def file_contribution(track: TrackSpec, value: int) -> int:
    """``value * weight`` of a scaling track_file, negated by ``reverse`` (unclamped)."""
    r = value * track.weight
    return -r if track.reverse else r


def file_faults(track: TrackSpec, value: int) -> bool:
    """True when a scaling track_file's value puts the instance in FAULT (result < -253)."""
    return scales(track) and file_contribution(track, value) < FILE_FAULT_BELOW


def effective_priority(base: int, tracks: Iterable[TrackSpec], states: Mapping[str, bool],
                       values: Mapping[str, int] | None = None) -> Effective:
    """Combine ``base`` with each track's state (missing state = ``init_ok``).

    ``values`` holds the last value read from each track_file (by name); it is
    used only for file tracks with a non-zero weight (see the module docstring).
    """
    faults = []
    delta = 0
    values = values or {}
    for t in tracks:
        if scales(t) and t.name in values:
            if base >= 255:
                continue  # an owner ignores weights (the OK/failed rules give it no delta either)
            r = file_contribution(t, values[t.name])
            if r < FILE_FAULT_BELOW:
                faults.append(f"{track_label(t)} {t.name}")
            else:
                delta += min(r, FILE_MAX_CONTRIBUTION)
            continue
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
            "process": "track_process", "bfd": "track_bfd"}.get(t.kind, t.kind)
