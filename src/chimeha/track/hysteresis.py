"""Rise/fall debouncing of check results (keepalived ``vrrp_script`` rise/fall).

A tracked script is OK until ``fall`` consecutive failures, then failed until
``rise`` consecutive successes. ``init_fail`` starts it failed. Pure: the
caller feeds each result and acts on the returned transition, and passes
:meth:`Hysteresis.detail` to ``VrrpInstance.set_tracked`` so reasons read
``track_script chk_server failed 2/2 times``.
"""

from __future__ import annotations


def transition_detail(ok: bool, rise: int, fall: int) -> str:
    """Operator words for a rise/fall threshold just crossed.

    ``"failed 2/2 times"`` (``fall`` 2: two consecutive failures out of the two
    needed) or ``"succeeded 1/1 times"`` (``rise`` 1).
    """
    n = rise if ok else fall
    return f"{'succeeded' if ok else 'failed'} {n}/{n} times"


class Hysteresis:
    """Debounced OK/failed state of one check."""

    def __init__(self, rise: int = 1, fall: int = 1, init_fail: bool = False):
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall must be at least 1")
        self.rise = rise
        self.fall = fall
        self.ok = not init_fail
        self._streak = 0
        self._settled = False  # False until a threshold has been crossed by results

    def feed(self, success: bool) -> bool | None:
        """Record one result; returns the new state if it just changed, else None."""
        if success == self.ok:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak >= (self.rise if success else self.fall):
            self.ok = success
            self._streak = 0
            self._settled = True
            return self.ok
        return None

    def detail(self) -> str:
        """Why the state is what it is, for ``set_tracked(..., detail=)``.

        After a transition: :func:`transition_detail`. Before any (the initial
        state): ``"failed (init_fail)"`` or ``"OK (initial)"``.
        """
        if not self._settled:
            return "OK (initial)" if self.ok else "failed (init_fail)"
        return transition_detail(self.ok, self.rise, self.fall)
