"""``track_bfd`` references as VRRP tracked objects (pure glue).

keepalived.conf(5): a ``track_bfd`` entry's weight defaults to its
``bfd_instance``'s ``weight [reverse]`` (default 0: the instance goes to FAULT
while the session is not Up); a ``vrrp_sync_group``'s ``track_bfd`` applies to
every member. A tracked session starts Down (keepalived: an unweighted
track_bfd keeps the instance in FAULT until the session comes Up).
"""

from __future__ import annotations

from typing import Any

from chimeha.config.build_bfd import bfd_instances
from chimeha.vrrp.events import TrackSpec

KIND = "bfd"


def bfd_track_specs(config: Any, inst: Any, groups: bool = True) -> tuple[TrackSpec, ...]:
    """The :class:`TrackSpec` of every track_bfd of ``inst`` and (``groups``) of its sync groups.

    ``inst`` may also be a sync group itself (with ``groups=False``).
    """
    refs = list(getattr(inst, "track_bfds", ()) or ())
    for g in getattr(config, "sync_groups", {}).values() if groups else ():
        if inst.name in g.group:
            refs.extend(getattr(g, "track_bfds", ()) or ())
    if not refs:
        return ()
    known, _ = bfd_instances(config)
    out: list[TrackSpec] = []
    seen: set[str] = set()
    for ref in refs:
        bfd = known.get(ref.name)
        if bfd is None or ref.name in seen:
            continue  # reported by build_bfd (unknown-bfd); an instance tracks a session once
        seen.add(ref.name)
        weight = ref.weight if ref.weight is not None else bfd.weight
        reverse = ref.reverse or (ref.weight is None and bfd.weight_reverse)
        out.append(TrackSpec(ref.name, KIND, weight, reverse, init_ok=False))
    return tuple(out)


def tracking_instances(config: Any, session: str) -> list[str]:
    """Names of the vrrp_instances that track ``session`` (directly or through a sync group)."""
    out = []
    for name, inst in getattr(config, "instances", {}).items():
        if any(t.name == session for t in bfd_track_specs(config, inst)):
            out.append(name)
    return out
