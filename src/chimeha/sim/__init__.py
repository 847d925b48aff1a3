"""A simulated LAN segment running the pure VRRP core on a fake clock."""

from chimeha.sim.segment import Node, Record, ScriptModel, Segment

__all__ = ["Node", "Record", "ScriptModel", "Segment"]
