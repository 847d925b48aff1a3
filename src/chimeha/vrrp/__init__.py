"""The pure VRRP core: packet codec, timers, the instance state machine, sync groups, the node.

See docs/vrrp.md. Nothing in this package performs I/O or reads a clock.
"""

from __future__ import annotations

from chimeha.vrrp.events import (Action, AddAddresses, InstanceSpec, PriorityChanged, RemoveAddresses,
                                 SendAdvert, SendGratuitous, SplitBrain, State, StateChanged, TrackSpec)
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.sync_group import SyncGroup

__all__ = ["Action", "AddAddresses", "InstanceSpec", "PriorityChanged", "RemoveAddresses", "SendAdvert",
           "SendGratuitous", "SplitBrain", "State", "StateChanged", "SyncGroup", "TrackSpec", "VrrpInstance"]
