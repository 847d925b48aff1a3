"""Strict mode and accept mode of one vrrp_instance, as the VRRP core runs it (keepalived 2.2.7).

Pure glue like :mod:`chimeha.vrrp.from_config`: what ``vrrp_strict`` /
``strict_mode`` change in an :class:`~chimeha.vrrp.events.InstanceSpec`, and
whether the instance accepts traffic to its VIPs. The diagnostics that go
with them are :mod:`chimeha.config.strict`'s.
"""

from __future__ import annotations

from typing import Any


def strict_of(config: Any, inst: Any) -> bool:
    """Whether ``inst`` runs in strict mode (its own strict_mode, else global vrrp_strict)."""
    if "strict_mode" in getattr(inst, "positions", {}):
        return bool(inst.strict_mode)
    return bool(inst.strict_mode or config.global_defs.vrrp_strict)


def accept_of(config: Any, inst: Any) -> bool:
    """Whether ``inst`` accepts traffic to its VIPs (keepalived's accept mode after its defaults and resets)."""
    owner = inst.priority == 255
    strict = strict_of(config, inst)
    accept = inst.accept if inst.accept is not None else (owner or not strict)
    if accept and strict and not owner and inst.version == 2:
        return False
    return accept


def adjusted(config: Any, inst: Any) -> dict[str, Any]:
    """The InstanceSpec fields strict mode changes for ``inst`` (empty when not strict)."""
    if not strict_of(config, inst):
        return {}
    owner = inst.priority == 255
    return {"auth_type": None, "initial_state": "MASTER" if owner else "BACKUP", "preempt_delay": 0.0,
            "down_timer_adverts": 3, "lower_prio_no_advert": True,
            **({"version": 3} if inst.family == 6 else {})}
