"""Tracking: rise/fall hysteresis and priority arithmetic (pure)."""

from chimeha.track.hysteresis import Hysteresis
from chimeha.track.weights import Effective, effective_priority

__all__ = ["Hysteresis", "Effective", "effective_priority"]
