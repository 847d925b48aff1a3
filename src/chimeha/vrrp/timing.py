"""VRRP timer formulas (RFC 3768 section 6.1, RFC 5798 / RFC 9568 section 6.1).

Skew_Time lets the highest-priority backup time out first:

* v2: ``(256 - Priority) / 256`` seconds, independent of the advert interval;
* v3: ``((256 - Priority) * Master_Adver_Interval) / 256``.

``Master_Down_Interval = down_timer_adverts * Master_Adver_Interval + Skew_Time``
where ``down_timer_adverts`` is 3 in the RFCs and configurable in keepalived.

Results are rounded to the microsecond, the resolution keepalived keeps its
timers in, so that simulated timelines print cleanly and compare exactly. The
v3 Skew_Time is not truncated to centiseconds (the unit of the v3 interval
field): keepalived 2.2.7 does not truncate it either (bench/vrrp/skew_v3.py).
"""

from __future__ import annotations



def _us(seconds: float) -> float:
    return round(seconds * 1_000_000) / 1_000_000


def skew_time(priority: int, interval: float, version: int = 2) -> float:
    """Skew_Time in seconds for ``priority`` (the receiver's own priority)."""
    prio = max(0, min(255, int(priority)))
    if version == 3:
        return _us((256 - prio) * interval / 256)
    return _us((256 - prio) / 256)


def master_down_interval(priority: int, interval: float, version: int = 2, down_timer_adverts: int = 3) -> float:
    """Master_Down_Interval in seconds: how long a backup waits for the master."""
    return _us(down_timer_adverts * interval + skew_time(priority, interval, version))


def advert_centiseconds(seconds: float) -> int:
    """An advert interval in whole centiseconds, rounded half up as keepalived rounds it.

    keepalived keeps timers in microseconds and rounds the v3 interval to
    centiseconds by adding half a centisecond before dividing, so 1.005 s is
    101 cs (Python's ``round`` would give 100, banker's rounding on a binary
    float). This is the one rounding function for advert intervals: config,
    the packet codec, the state machine and the simulator all use it.
    """
    micro = int(round(float(seconds) * 1_000_000))
    return max(0, (micro + 5_000) // 10_000)


def advert_seconds_v2(seconds: float) -> int:
    """A VRRPv2 advert interval in whole seconds (1..255), rounded half up."""
    return max(1, min(255, (advert_centiseconds(seconds) + 50) // 100))


def wire_interval(interval: float, version: int) -> float:
    """The advert interval as it survives the wire: whole seconds (v2) or centiseconds (v3)."""
    if version == 2:
        return float(advert_seconds_v2(interval))
    return max(1, min(4095, advert_centiseconds(interval))) / 100.0
