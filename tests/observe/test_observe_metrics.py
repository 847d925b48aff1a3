from prometheus_client.parser import text_string_to_metric_families

from chimeha.observe.metrics import Metrics
from chimeha.observe.schema import normalize

from observe_fakes import sample_snapshot


def samples(metrics: Metrics) -> dict:
    out = {}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples, name, **labels):
    return all_samples[(name, tuple(sorted(labels.items())))]


def test_snapshot_series_follow_the_snapshot():
    snap = sample_snapshot()
    m = Metrics(lambda: normalize(snap))
    s = samples(m)
    assert value(s, "chimeha_vrrp_state", instance="VI_1", state="MASTER") == 1
    assert value(s, "chimeha_vrrp_state", instance="VI_1", state="BACKUP") == 0
    assert value(s, "chimeha_vrrp_state", instance="VI_2", state="BACKUP") == 1
    assert value(s, "chimeha_vrrp_effective_priority", instance="VI_2") == 90
    assert value(s, "chimeha_vrrp_base_priority", instance="VI_2") == 100
    assert value(s, "chimeha_vrrp_adverts_sent_total", instance="VI_1") == 812
    assert value(s, "chimeha_vrrp_adverts_received_total", instance="VI_2") == 700
    assert value(s, "chimeha_vrrp_drops_total", instance="VI_1", reason="checksum") == 2
    assert value(s, "chimeha_vrrp_unmatched_drops_total", reason="vrid-unknown") == 7
    assert value(s, "chimeha_vrrp_split_brain", instance="VI_1", peer="") == 0
    assert value(s, "chimeha_track_script_ok", script="chk_server") == 1
    vs = "192.168.231.10:8801/TCP"
    assert value(s, "chimeha_lvs_real_server_up", virtual_server=vs, real_server="192.168.231.12:8801") == 0
    assert value(s, "chimeha_lvs_real_server_weight", virtual_server=vs, real_server="192.168.231.11:8801") == 1
    assert value(s, "chimeha_lvs_real_server_connections_total", virtual_server=vs, real_server="192.168.231.11:8801") == 311
    assert value(s, "chimeha_lvs_virtual_server_active", virtual_server=vs, dataplane="nft") == 1
    assert value(s, "chimeha_vrrp_last_failover_seconds", instance="VI_1") == 0.992

    # A scrape reads the snapshot afresh: change it and the series follow.
    snap["instances"]["VI_1"]["split_brain"] = {"active": True, "peer": "192.168.231.12", "since": 1.0}
    snap["instances"]["VI_1"]["state"] = "FAULT"
    snap["scripts"]["chk_server"]["result"] = "failed"
    s = samples(m)
    assert value(s, "chimeha_vrrp_split_brain", instance="VI_1", peer="192.168.231.12") == 1
    assert value(s, "chimeha_vrrp_state", instance="VI_1", state="FAULT") == 1
    assert value(s, "chimeha_track_script_ok", script="chk_server") == 0


def test_unknown_script_result_is_absent_not_zero():
    m = Metrics(lambda: normalize({"scripts": {"chk": {"result": "unknown"}}}))
    assert not [k for k in samples(m) if k[0] == "chimeha_track_script_ok"]


def test_event_series_count_transitions_and_failover_histogram():
    m = Metrics(lambda: normalize({}))
    for _ in range(2):
        m.on_entry({"kind": "transition", "instance": "VI_1", "from": "BACKUP", "to": "MASTER"})
    m.on_entry({"kind": "split_brain", "instance": "VI_1"})
    m.on_entry({"kind": "reload", "instance": "-"})
    m.observe_failover("VI_1", 3.012)
    m.observe_failover("VI_1", 0.4)
    s = samples(m)
    assert value(s, "chimeha_vrrp_transitions_total", instance="VI_1", **{"from": "BACKUP", "to": "MASTER"}) == 2
    # Split-brain episodes are the core's counter (in the snapshot), not counted from journal entries.
    assert ("chimeha_vrrp_split_brain_episodes_total", (("instance", "VI_1"),)) not in s
    assert value(s, "chimeha_vrrp_failover_seconds_count", instance="VI_1") == 2
    assert value(s, "chimeha_vrrp_failover_seconds_bucket", instance="VI_1", le="0.5") == 1
    assert value(s, "chimeha_vrrp_failover_seconds_bucket", instance="VI_1", le="3.0") == 1
    assert value(s, "chimeha_vrrp_failover_seconds_bucket", instance="VI_1", le="3.5") == 2
    assert abs(value(s, "chimeha_vrrp_failover_seconds_sum", instance="VI_1") - 3.412) < 1e-9
    assert not [k for k in s if k[0] == "chimeha_vrrp_transitions_total" and ("to", "") in k[1]]
