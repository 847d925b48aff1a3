"""Every counter the core keeps reaches `chime-ha status` (JSON and text) and /metrics.

The counters are enumerated from the core's dataclasses (``vrrp.events.Counters``
for the state machine, ``vrrp.node_types.InstanceStats`` for the node, every
``packet.DropReason``), not from a hand list: a counter added to the core
and forgotten on the way out fails here.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from chimeha.observe.metrics import Metrics
from chimeha.observe.render import render_status
from chimeha.observe.schema import normalize
from chimeha.runtime import status
from chimeha.vrrp.events import Counters, InstanceSpec, SendAdvert, State
from chimeha.vrrp.node import VrrpNode
from chimeha.vrrp.node_types import InstanceStats, InstanceStatus
from chimeha.vrrp.packet import DropReason

SPEC = InstanceSpec(name="VI_1", vrid=51, interface="eth0", primary_address="192.168.231.11",
                    advert_addresses=("192.168.231.10",))


def _int_fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.type == "int"]


def _counter_fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.type == "Counter"]


def _distinct():
    """Values that cannot be mistaken for each other (or for anything else on the page)."""
    n = 700001
    while True:
        yield n
        n += 1013


def _samples(metrics: Metrics) -> dict:
    out = {}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _status_with_every_counter_set():
    values = _distinct()
    core = {name: next(values) for name in _int_fields(Counters)}
    drops = {reason.value: next(values) for reason in DropReason}
    node = {name: next(values) for name in _int_fields(InstanceStats)}
    missing = [n for n in node if n not in {f.name for f in dataclasses.fields(InstanceStatus)}]
    assert not missing, f"InstanceStats counters {missing} are not carried into InstanceStatus"
    assert _counter_fields(InstanceStats) == ["drops"], "a new per-reason counter needs its own way out"
    st = InstanceStatus(name="VI_1", spec=SPEC, state=State.MASTER, priority=100, master="192.168.231.11",
                        advert_interval=1.0, counters=Counters(**core).as_dict(), drops=drops, vips_owned=True,
                        last_change=None, failovers=(3.01,), split_brain_peer=None, split_brain_since=None, faults=(),
                        **{k: v for k, v in node.items()})
    return st, core, drops, node


def test_every_core_counter_reaches_status_json_text_and_metrics():
    st, core, drops, node = _status_with_every_counter_set()
    snap = normalize({"instances": {"VI_1": status.instance_entry(st, 0.0)}})
    inst = snap["instances"]["VI_1"]
    text = render_status(snap)
    samples = _samples(Metrics(lambda: snap))

    def check(key: str, value: int, metric: str, **labels):
        labels = tuple(sorted({"instance": "VI_1", **labels}.items()))
        assert samples.get((metric, labels)) == value, f"{metric}{dict(labels)} is not {value}"
        assert str(value) in text, f"{key} ({value}) is not in the text status"

    for field, value in core.items():
        key = status.counter_key(field)
        assert inst[key] == value, f"Counters.{field} is not in the status JSON as {key!r}"
        check(key, value, f"chimeha_vrrp_{key}_total")
    for field, value in node.items():
        if field == "failover_count":
            assert inst["failovers"]["count"] == value
            check("failovers", value, "chimeha_vrrp_failovers_total")
            continue
        assert field in status.NODE_COUNTERS, f"InstanceStats.{field} has no status key (runtime/status.py)"
        key = status.NODE_COUNTERS[field]
        assert inst[key] == value, f"InstanceStats.{field} is not in the status JSON as {key!r}"
        check(key, value, f"chimeha_vrrp_{key}_total")
    for reason, value in drops.items():
        assert inst["drops_by_reason"][reason] == value
        check(f"drop {reason}", value, "chimeha_vrrp_drops_total", reason=reason)
        assert f"{reason} {value}" in text


def test_node_wide_drops_reach_status_and_metrics():
    """Drops no instance can be blamed for (unknown VRID, receive errors) are the node's own counter."""
    node = VrrpNode([SPEC])
    node.receive_datagram(b"\x21\x63\x64\x01", "192.168.231.12", "224.0.0.18", 255, 4, "eth0", 1.0)  # VRID 99
    node.note_drop("receive-error")
    daemon = SimpleNamespace(config=None, now=lambda: 1.0, started_at=None, config_path="k.conf",
                             config_loaded_at=None, reloads=0, node=node, scripts={}, lvs=None, bgp=None)
    snap = normalize(status.snapshot(daemon))
    assert snap["drops_by_reason"]["receive-error"] == 1
    [reason] = [r for r in snap["drops_by_reason"] if r != "receive-error"]  # the packet's verdict
    samples = _samples(Metrics(lambda: snap))
    for r in (reason, "receive-error"):
        assert samples[("chimeha_vrrp_unmatched_drops_total", (("reason", r),))] == 1
        assert f"{r} 1" in render_status(snap)


def test_a_real_node_counts_what_the_status_shows():
    """End to end through the real core: start, take over, send; the status agrees with the node."""
    node = VrrpNode([SPEC])
    node.start(0.0)
    while node.state("VI_1") is not State.MASTER:
        node.handle_timer(node.get_timer())
    for a in node.pop_actions():
        if isinstance(a, SendAdvert):
            node.note_send("VI_1", True)
    node.note_send("VI_1", False)
    entry = normalize({"instances": {"VI_1": status.instance_entry(node.instance_status("VI_1"), 5.0)}})
    inst = entry["instances"]["VI_1"]
    c = node.instance("VI_1").counters
    assert inst["became_master"] == c.became_master == 1
    assert inst["adverts_scheduled"] == c.adverts_sent >= 1
    assert inst["adverts_sent"] == c.adverts_sent and inst["send_errors"] == 1
