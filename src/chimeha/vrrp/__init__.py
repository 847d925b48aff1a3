"""The pure VRRP core: packet codec, timers, the instance state machine, sync groups.

See docs/vrrp.md. Nothing in this package performs I/O or reads a clock.
Names are resolved lazily so that ``chimeha.track`` can import
``chimeha.vrrp.events`` without a circular import.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "VrrpInstance": "instance", "SyncGroup": "sync_group",
    **{n: "events" for n in ("Action", "AddAddresses", "InstanceSpec", "PriorityChanged", "RemoveAddresses",
                             "SendAdvert", "SendGratuitous", "SplitBrain", "State", "StateChanged", "TrackSpec")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
