"""Prometheus series for the BGP section of the snapshot (see docs/bgp.md)."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import GaugeMetricFamily

SESSION_STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")


def bgp_metrics(bgp: dict | None) -> Iterator:
    """``chimeha_bgp_session_state``, ``chimeha_bgp_session_up``, ``chimeha_bgp_announced``."""
    if not bgp:
        return
    state = GaugeMetricFamily("chimeha_bgp_session_state", "1 for the BGP session's current state",
                              labels=["peer", "state"])
    up = GaugeMetricFamily("chimeha_bgp_session_up", "1 while the BGP session is Established", labels=["peer"])
    sent = GaugeMetricFamily("chimeha_bgp_prefixes_sent", "Prefixes sent to the peer", labels=["peer"])
    for peer, p in (bgp.get("peers") or {}).items():
        for s in SESSION_STATES:
            state.add_metric([peer, s], 1.0 if p.get("state") == s else 0.0)
        up.add_metric([peer], 1.0 if p.get("state") == "Established" else 0.0)
        sent.add_metric([peer], float(p.get("prefixes_sent") or 0))
    ann = GaugeMetricFamily("chimeha_bgp_announced", "1 while the prefix is announced, 0 while withheld",
                            labels=["prefix"])
    for prefix in bgp.get("announced") or ():
        ann.add_metric([prefix], 1.0)
    for prefix in bgp.get("withheld") or {}:
        if prefix not in (bgp.get("announced") or ()):
            ann.add_metric([prefix], 0.0)
    speaker = GaugeMetricFamily("chimeha_bgp_speaker_running", "1 while the BGP speaker process runs")
    speaker.add_metric([], 1.0 if (bgp.get("speaker") or {}).get("running") else 0.0)
    yield from (state, up, sent, ann, speaker)
