"""Tracking: rise/fall hysteresis, priority arithmetic, process matching and quorum (pure)."""

from chimeha.track.hysteresis import Hysteresis, transition_detail
from chimeha.track.process import ProcessQuorum, ProcessRule
from chimeha.track.weights import Effective, effective_priority

__all__ = ["Hysteresis", "transition_detail", "Effective", "effective_priority", "ProcessQuorum", "ProcessRule"]
