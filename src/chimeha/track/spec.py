"""What one tracked object attached to a VRRP instance is (pure data).

It lives in ``chimeha.track`` so that the priority arithmetic
(:mod:`chimeha.track.weights`) needs nothing from ``chimeha.vrrp``: the
dependency runs one way, vrrp -> track.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrackSpec:
    """One tracked object attached to an instance.

    ``kind`` is "script", "interface", "file" or "process" (for messages only).
    ``weight`` 0 means a failure puts the instance in FAULT; a positive weight
    is added to the priority while the object is OK; a negative weight is
    added while it fails. ``reverse`` inverts OK and failed first.
    A "file" track with a non-zero weight scales instead: once its value is
    reported (``VrrpInstance.set_tracked(..., value=)``) it contributes
    ``value x weight`` (negated by ``reverse``; see :mod:`chimeha.track.weights`).
    ``group`` names the vrrp_sync_group whose tracker this is ("" for the
    instance's own): a group's tracker is attached to every member.
    """

    name: str
    kind: str = "script"
    weight: int = 0
    reverse: bool = False
    init_ok: bool = True
    group: str = ""
