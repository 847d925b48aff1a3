"""Prometheus series for the BFD section of the snapshot, one set per session (see docs/bfd.md)."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

SESSION_STATES = ("AdminDown", "Down", "Init", "Up")
_COUNTERS = (("tx", "chimeha_bfd_packets_sent", "BFD Control packets sent"),
             ("rx", "chimeha_bfd_packets_received", "BFD Control packets accepted"),
             ("up", "chimeha_bfd_session_up_transitions", "Times the session came Up"),
             ("down", "chimeha_bfd_session_down_transitions", "Times the session left Up"),
             ("detect_expired", "chimeha_bfd_detection_expired", "Control detection time expiries"),
             ("polls_completed", "chimeha_bfd_polls_completed", "Poll Sequences completed (timer changes)"))


def bfd_metrics(bfd: dict | None) -> Iterator:
    """``chimeha_bfd_session_state{session,neighbor,state}``, ``..._up``, timers, counters, drops."""
    if not bfd:
        return
    labels = ["session", "neighbor"]
    state = GaugeMetricFamily("chimeha_bfd_session_state", "1 for the BFD session's current state",
                              labels=[*labels, "state"])
    up = GaugeMetricFamily("chimeha_bfd_session_is_up", "1 while the BFD session is Up", labels=labels)
    detect = GaugeMetricFamily("chimeha_bfd_detection_time_seconds",
                               "Detection time in use (remote multiplier x agreed interval)", labels=labels)
    tx_int = GaugeMetricFamily("chimeha_bfd_tx_interval_seconds", "Transmit interval in use (before jitter)",
                               labels=labels)
    counters = {key: CounterMetricFamily(name, doc, labels=labels) for key, name, doc in _COUNTERS}
    drops = CounterMetricFamily("chimeha_bfd_drops", "BFD packets discarded, by reason",
                                labels=["session", "reason"])
    for name, s in sorted((bfd.get("sessions") or {}).items()):
        lv = [name, str(s.get("neighbor"))]
        for st in SESSION_STATES:
            state.add_metric([*lv, st], 1.0 if s.get("state") == st else 0.0)
        up.add_metric(lv, 1.0 if s.get("state") == "Up" else 0.0)
        detect.add_metric(lv, float(s.get("detection_time_ms") or 0.0) / 1000.0)
        tx_int.add_metric(lv, float(s.get("tx_interval_ms") or 0.0) / 1000.0)
        c = s.get("counters") or {}
        for key, fam in counters.items():
            fam.add_metric(lv, float(c.get(key) or 0))
        for reason, n in sorted((c.get("drops_by_reason") or {}).items()):
            drops.add_metric([name, reason], float(n))
    for reason, n in sorted((bfd.get("drops_by_reason") or {}).items()):
        drops.add_metric(["", reason], float(n))
    yield from (state, up, detect, tx_int, *counters.values(), drops)
