"""Tracking: rise/fall hysteresis and priority arithmetic (pure)."""

from chimeha.track.hysteresis import Hysteresis, transition_detail
from chimeha.track.weights import Effective, effective_priority

__all__ = ["Hysteresis", "transition_detail", "Effective", "effective_priority"]
