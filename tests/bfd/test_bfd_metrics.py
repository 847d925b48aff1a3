"""Prometheus series per BFD session, from the snapshot shape BfdService.snapshot() produces."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from chimeha.bfd.node import BfdNode
from chimeha.bfd.session import SessionSpec
from chimeha.runtime.bfd_metrics import bfd_metrics


class _C(Collector):
    def __init__(self, snap):
        self.snap = snap

    def collect(self):
        yield from bfd_metrics(self.snap)


def render(snap) -> str:
    reg = CollectorRegistry()
    reg.register(_C(snap))
    return generate_latest(reg).decode()


def test_series_follow_the_session():
    node = BfdNode([SessionSpec("peer", "192.168.231.11", min_tx=0.05, min_rx=0.05, multiplier=3)],
                   random=lambda: 0.5)
    node.start(0.0)
    node.pop_actions()
    node.drops["ttl"] += 2
    text = render(node.snapshot())
    assert 'chimeha_bfd_session_state{neighbor="192.168.231.11",session="peer",state="Down"} 1.0' in text
    assert 'chimeha_bfd_session_state{neighbor="192.168.231.11",session="peer",state="Up"} 0.0' in text
    assert 'chimeha_bfd_session_is_up{neighbor="192.168.231.11",session="peer"} 0.0' in text
    assert 'chimeha_bfd_packets_sent_total{neighbor="192.168.231.11",session="peer"} 1.0' in text
    assert 'chimeha_bfd_drops_total{reason="ttl",session=""} 2.0' in text


def test_no_bfd_no_series():
    assert "chimeha_bfd" not in render(None)
