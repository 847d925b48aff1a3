"""Rise/fall debouncing of check results (keepalived ``vrrp_script`` rise/fall).

A tracked script is OK until ``fall`` consecutive failures, then failed until
``rise`` consecutive successes. ``init_fail`` starts it failed. Pure: the
caller feeds each result and acts on the returned transition.
"""

from __future__ import annotations


class Hysteresis:
    """Debounced OK/failed state of one check."""

    def __init__(self, rise: int = 1, fall: int = 1, init_fail: bool = False):
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall must be at least 1")
        self.rise = rise
        self.fall = fall
        self.ok = not init_fail
        self._streak = 0

    def feed(self, success: bool) -> bool | None:
        """Record one result; returns the new state if it just changed, else None."""
        if success == self.ok:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak >= (self.rise if success else self.fall):
            self.ok = success
            self._streak = 0
            return self.ok
        return None
