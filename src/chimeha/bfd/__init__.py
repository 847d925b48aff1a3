"""BFD (RFC 5880 asynchronous mode, RFC 5881 single hop), sans I/O.

* :mod:`chimeha.bfd.packet`: Control packet codec and stateless receive checks.
* :mod:`chimeha.bfd.session`: one session's state machine and timers.
* :mod:`chimeha.bfd.node`: every session of a node, demultiplexing, drop counters.
* :mod:`chimeha.bfd.tracks`: ``track_bfd`` references as VRRP tracked objects.

The asyncio adapter that owns the UDP 3784 sockets is :mod:`chimeha.runtime.bfd`.
"""

from chimeha.bfd.node import BfdNode
from chimeha.bfd.packet import ControlPacket, Diag, Drop, DropReason, SessionState
from chimeha.bfd.session import Session, SessionChanged, SessionSpec, SendControl

__all__ = ["BfdNode", "ControlPacket", "Diag", "Drop", "DropReason", "SendControl", "Session", "SessionChanged",
           "SessionSpec", "SessionState"]
