"""Checks on vrrp_sync_group blocks and the tracking of their members (keepalived 2.2.7).

What ``keepalived -t`` reports, here at the FILE:LINE of the entry it is about
(keepalived prints most of these without a line): a member's own weighted
tracker without ``sync_group_tracking_weight`` ("ignoring tracked script chk
with weights due to SYNC group"), a weighted group tracker when a member is the
address owner ("Cannot have weighted track script ... clearing weight"),
``global_tracking`` (deprecated), a group with one member, an undefined
tracked object on a group, an instance named by two groups. The adjustments
themselves are made where the specs are built
(:func:`chimeha.vrrp.sync_group.member_tracks`).
"""

from __future__ import annotations

from .model import Config
from .values import Ctx

#: warning codes of this module that keepalived -t also reports (exit 5)
KEEPALIVED_REPORTS = frozenset({"sync-track-weight", "sync-track-weight-owner", "sync-group-one-member",
                                "sync-group-twice", "sync-group-mixed-owner"})

_LABEL = {"script": "track_script", "interface": "track_interface", "file": "track_file",
          "process": "track_process", "bfd": "track_bfd"}


def _refs(config: Config, holder) -> list[tuple[str, object, int]]:
    """(kind, ref, effective weight) of every tracker reference of ``holder`` (instance or group)."""
    out = []
    for ref in holder.track_scripts:
        obj = config.vrrp_scripts.get(ref.name)
        out.append(("script", ref, ref.weight if ref.weight is not None else (obj.weight if obj else 0)))
    for ref in holder.track_interfaces:
        out.append(("interface", ref, ref.weight or 0))
    for ref in holder.track_files:
        obj = config.track_files.get(ref.name)
        out.append(("file", ref, ref.weight if ref.weight is not None else (obj.weight if obj else 1)))
    for ref in holder.track_processes:
        obj = config.track_processes.get(ref.name)
        out.append(("process", ref, ref.weight if ref.weight is not None else (obj.weight if obj else 0)))
    return out


def check_sync_groups(config: Config, ctx: Ctx) -> None:
    """Append the sync-group diagnostics of ``config``."""
    owner_of: dict[str, str] = {}
    for sg in config.sync_groups.values():
        if sg.global_tracking:
            ctx.warning(sg.positions.get("global_tracking", sg.where), "deprecated",
                        f"vrrp_sync_group {sg.name}: global_tracking is deprecated; use track_interface/"
                        "script/file on the sync group (chime-ha reads it as sync_group_tracking_weight)")
        members = [m for m in sg.group if m in config.instances]
        own = []
        for m in members:
            if m in owner_of:
                ctx.warning(sg.positions.get("group", sg.where), "sync-group-twice",
                            f"vrrp_instance {m} is already in vrrp_sync_group {owner_of[m]}; "
                            f"vrrp_sync_group {sg.name} ignores it")
            else:
                owner_of[m] = sg.name
                own.append(m)
        if len(own) == 1:
            ctx.warning(sg.positions.get("group", sg.where), "sync-group-one-member",
                        f"vrrp_sync_group {sg.name} has only one vrrp_instance ({own[0]}); "
                        "this is probably not what was meant")
        for kind, ref, _w in _refs(config, sg):
            table = {"script": config.vrrp_scripts, "file": config.track_files,
                     "process": config.track_processes}.get(kind)
            if table is not None and ref.name not in table:
                ctx.error(ref.where, "undefined-track",
                          f"vrrp_sync_group {sg.name} tracks {_LABEL[kind]} '{ref.name}', which is not defined")
        owners = [m for m in own if config.instances[m].priority == 255]
        if owners and len(owners) != len(own):
            ctx.warning(sg.positions.get("group", sg.where), "sync-group-mixed-owner",
                        f"vrrp_sync_group {sg.name} has address owners (priority 255: {', '.join(owners)}) and "
                        "members that are not; keepalived says this won't work")
        if owners:
            for kind, ref, weight in _refs(config, sg):
                if weight:
                    ctx.warning(ref.where, "sync-track-weight-owner",
                                f"vrrp_sync_group {sg.name}: {_LABEL[kind]} {ref.name} cannot have weight {weight} "
                                f"with member {owners[0]} having priority 255; the weight is cleared (a failure "
                                "puts the group in FAULT)")
        if sg.sync_group_tracking_weight or sg.global_tracking:
            continue
        for m in own:
            _member_weights(config, sg.name, config.instances[m], ctx)


def _member_weights(config: Config, group: str, inst, ctx: Ctx) -> None:
    refs = _refs(config, inst)
    refs += [("bfd", ref, ref.weight if ref.weight is not None else None) for ref in inst.track_bfds]
    for kind, ref, weight in refs:
        if kind == "bfd" and weight is None:
            from .build_bfd import bfd_instances

            bfd = bfd_instances(config)[0].get(ref.name)
            weight = bfd.weight if bfd is not None else 0
        if not weight or kind == "process":
            continue  # keepalived 2.2.7 keeps a track_process weight in a sync group
        if kind == "interface" or (kind == "file" and weight == 1):
            what = "its weight is ignored (weight 0: a failure puts the sync group in FAULT)"
        else:
            what = "it is ignored"
        ctx.warning(ref.where, "sync-track-weight",
                    f"vrrp_instance {inst.name} is in vrrp_sync_group {group}: {_LABEL[kind]} {ref.name} has weight "
                    f"{weight}, so {what}; set sync_group_tracking_weight on the group to keep weights")
