"""SIGHUP: reload a running :class:`~chimeha.runtime.daemon.Daemon` from its file.

Unchanged instances (compared without file:line positions, so moving a block
is not a change) keep their state, timers and VIPs untouched. A changed
instance is rebuilt but keeps MASTER if it was MASTER (no priority 0; VIPs it
still lists are never removed). Removed instances shut down (priority 0, VIPs
removed). An invalid file is refused with its diagnostics and the old config
keeps running.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from chimeha.runtime.daemon import DaemonError
from chimeha.vrrp.events import State

log = logging.getLogger("chimeha.runtime")


async def reload(daemon) -> dict:
    """Reload ``daemon``; returns ``{"ok", "diagnostics", "message"}``."""
    from chimeha.config import load

    result = load(daemon.config_path)
    diags = [str(d) for d in result.diagnostics]
    if not result.ok or result.config is None:
        for d in diags:
            log.error("reload refused: %s", d)
        return {"ok": False, "diagnostics": diags, "message": "invalid configuration; still running the old one"}
    new_config = result.config
    try:
        new_specs = {s.name: s for s in daemon._specs(new_config)}
    except Exception as exc:
        log.error("reload refused: %s", exc)
        return {"ok": False, "diagnostics": diags + [str(exc)], "message": "reload failed"}
    # Compared as built from the files (before the runtime fills in addresses).
    old_specs = {s.name: s for s in daemon._specs(daemon.config)}
    keep, changed, drop = {}, {}, []
    for name, inst in daemon.instances.items():
        spec = new_specs.get(name)
        if spec is None:
            drop.append(inst)
        elif _spec_key(spec) == _spec_key(old_specs.get(name)):
            keep[name] = inst
        else:
            changed[name] = inst
    now = daemon.now()
    for inst in drop:
        inst.core.shutdown(now)
        daemon._after_input([inst])
    for inst in drop + list(changed.values()):
        if inst.timer:
            inst.timer.cancel()
            inst.timer = None
    await daemon._stop_trackers()
    old_config, old_instances = daemon.config, daemon.instances
    daemon.config = new_config
    try:
        daemon._build(new_config, cleanup_stale=False, keep=keep)
    except DaemonError as exc:
        log.error("reload failed: %s", exc)
        daemon.config, daemon.instances = old_config, old_instances
        for inst in old_instances.values():
            daemon._arm(inst)
        daemon._start_trackers(old_config)
        return {"ok": False, "diagnostics": diags + [str(exc)], "message": "reload failed"}
    daemon._setup_notify()
    daemon._start_trackers(new_config)
    now = daemon.now()
    started = [i for n, i in daemon.instances.items() if n not in keep]
    for inst in started:
        inst.core.start(now)
        old = changed.get(inst.name)
        if old is None:
            continue
        gone = _vip_set(old.core.spec) - _vip_set(inst.core.spec)
        if old.vips_owned and gone:
            daemon._nl.apply(inst.name, [v for v in old.core.spec.virtual_ipaddresses
                                       if v.address in gone], (), (), old.core.spec.interface, False)
        if old.core.state is State.MASTER:
            inst.core.force_state(State.MASTER, now, "configuration reloaded while MASTER")
    for kept in keep.values():
        # A kept instance whose priority keepalived-style owner-conflict handling
        # lowered gets its configured priority back, as a reload does in keepalived.
        kept.core.on_reload(now)
    daemon._after_input(list(daemon.instances.values()))
    daemon._gc_sockets()
    await daemon._reload_lvs()
    daemon.reloads += 1
    daemon.generation += 1
    daemon.config_loaded_at = time.time()
    msg = (f"reloaded: {len(keep)} instance(s) unchanged, {len(changed)} changed, "
           f"{len(started) - len(changed)} added, {len(drop)} removed")
    log.info(msg)
    return {"ok": True, "diagnostics": diags, "message": msg}



def _strip_where(obj):
    if dataclasses.is_dataclass(obj) and any(f.name == "where" for f in dataclasses.fields(obj)):
        return dataclasses.replace(obj, where=None)
    return obj


def _spec_key(spec):
    """A spec with its file:line positions removed, for comparison across reloads."""
    if spec is None:
        return None
    return dataclasses.replace(
        spec,
        virtual_ipaddresses=tuple(map(_strip_where, spec.virtual_ipaddresses)),
        virtual_ipaddresses_excluded=tuple(map(_strip_where, spec.virtual_ipaddresses_excluded)),
        virtual_routes=tuple(map(_strip_where, spec.virtual_routes)))


def _vip_set(spec) -> set[str]:
    return {v.address for v in spec.virtual_ipaddresses}


