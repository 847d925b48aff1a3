"""The root of chime-ha's errors, split by who is at fault.

Like h11's ``LocalProtocolError`` / ``RemoteProtocolError``, an error says
whose mistake it is, because that decides what happens next:

- :class:`LocalError`: our side: the operator's configuration or command
  line. Reported with FILE:LINE or the argument, never as a traceback; the
  running state stays as it was (a bad reload changes nothing).
- :class:`RemoteError`: a peer's packet or answer. Counted and reported
  (for VRRP as a drop reason), never allowed to stop the daemon.
- :class:`HostError`: the machine refused: netlink, nft, a socket, a
  missing interface or module. Reported with what was attempted; the caller
  decides whether to retry, fall back or refuse.

Each package derives its own errors from one of these three (for example
``vrrp.packet.PacketError(RemoteError)``), so a task boundary can catch
``ChimeHaError`` and know the message is meant for an operator.
"""

from __future__ import annotations


class ChimeHaError(Exception):
    """Any error chime-ha raises on purpose; ``str(e)`` is operator words."""


class LocalError(ChimeHaError):
    """Our configuration or usage is wrong."""


class ConfigError(LocalError):
    """The configuration cannot be used (the message names FILE:LINE)."""


class UsageError(LocalError):
    """A command-line argument or control request is wrong."""


class RemoteError(ChimeHaError):
    """A peer sent something we cannot accept."""


class HostError(ChimeHaError):
    """The host (kernel, netlink, nft, a socket, a file) refused an operation."""
