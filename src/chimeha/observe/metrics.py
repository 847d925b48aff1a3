"""Prometheus metrics for chime-ha.

Two kinds of series live in one private :class:`CollectorRegistry`:

* snapshot gauges and counters, computed at scrape time from the daemon's
  snapshot (state, priorities, adverts, drops, split brain, scripts, real
  servers, data-plane counters), so they can never drift from what
  ``chime-ha status`` shows;
* event series that a snapshot cannot reconstruct, fed as events happen:
  transitions by (from, to) and the failover duration histogram (from the
  durations the core puts into its ``StateChanged`` events).

Every counter the core keeps per instance is exported as
``chimeha_vrrp_<key>_total`` for each key of :data:`.schema.COUNTER_KEYS`
(derived from the core's dataclasses, so a new counter cannot be forgotten).

Every name starts with ``chimeha_``; the list is in docs/operations.md.
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from .schema import COUNTER_KEYS, STATES, STAT_KEYS, Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Failover is 3 x advert_int + skew for a dead master (3.0-4.0 s with the
# seed's advert_int 1) and about skew for a master that says goodbye; the
# buckets resolve both regimes.
FAILOVER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 3.5, 4.0, 5.0, 7.5, 10.0, 30.0)


#: HELP text of the per-instance counters (schema.COUNTER_KEYS); a counter missing here gets its name in words.
COUNTER_HELP = {
    "adverts_sent": "VRRP advertisement datagrams sent (one per unicast peer)",
    "adverts_received": "Valid VRRP advertisements received",
    "send_errors": "VRRP advertisements the kernel refused to send",
    "adverts_scheduled": "VRRP advertisements the state machine sent (before fan-out to unicast peers)",
    "adverts_processed": "VRRP advertisements the state machine processed",
    "priority_zero_sent": "Priority-0 (resign) advertisements sent",
    "priority_zero_received": "Priority-0 (resign) advertisements received",
    "became_master": "Times the instance became master",
    "released_master": "Times the instance left the master state",
    "entered_fault": "Times the instance entered the FAULT state",
    "split_brain_episodes": "Split-brain episodes (another master heard while master)",
    "lower_priority_received": "Advertisements from another master with a lower priority (or losing the tie)",
    "interval_adopted": "Times a backup adopted the master's advertisement interval",
}


class SnapshotCollector(Collector):
    """Builds the snapshot series from ``provider()`` at every scrape."""

    def __init__(self, provider: Callable[[], Snapshot]):
        self._provider = provider

    def collect(self) -> Iterator:
        snap = self._provider()
        yield from _instance_metrics(snap)
        yield from _script_metrics(snap)
        yield from _lvs_metrics(snap)
        yield from _lvs_sync_metrics(snap.get("lvs_sync"))
        from chimeha.runtime.bgp_metrics import bgp_metrics
        yield from bgp_metrics(snap.get("bgp"))
        from chimeha.runtime.bfd_metrics import bfd_metrics
        yield from bfd_metrics(snap.get("bfd"))
        drops = CounterMetricFamily("chimeha_vrrp_unmatched_drops", "VRRP packets dropped before matching an instance, by reason", labels=["reason"])
        for reason, n in sorted(snap["drops_by_reason"].items()):
            drops.add_metric([reason], n)
        yield drops
        node = snap["node"]
        info = InfoMetricFamily("chimeha_node", "This chime-ha node")
        info.add_metric([], {"router_id": node["router_id"], "hostname": node["hostname"],
                             "config_path": node["config_path"]})
        yield info
        reloads = CounterMetricFamily("chimeha_config_reloads", "Configuration reloads since start")
        reloads.add_metric([], node["reloads"])
        yield reloads


def _instance_metrics(snap: Snapshot) -> Iterator:
    state = GaugeMetricFamily("chimeha_vrrp_state", "1 for the state the VRRP instance is in, 0 for the others", labels=["instance", "state"])
    base = GaugeMetricFamily("chimeha_vrrp_base_priority", "Configured VRRP priority", labels=["instance"])
    eff = GaugeMetricFamily("chimeha_vrrp_effective_priority", "VRRP priority after tracking weights", labels=["instance"])
    vips = GaugeMetricFamily("chimeha_vrrp_vips_owned", "1 when this node holds the instance's virtual addresses", labels=["instance"])
    split = GaugeMetricFamily("chimeha_vrrp_split_brain", "1 while this master hears another master for its VRID", labels=["instance", "peer"])
    counters = {k: CounterMetricFamily(f"chimeha_vrrp_{k}", COUNTER_HELP.get(k, f"VRRP {k.replace('_', ' ')}"),
                                       labels=["instance"]) for k in COUNTER_KEYS}
    failovers = CounterMetricFamily("chimeha_vrrp_failovers", "Takeovers whose duration the node measured", labels=["instance"])
    drops = CounterMetricFamily("chimeha_vrrp_drops", "VRRP packets dropped, by reason", labels=["instance", "reason"])
    last = GaugeMetricFamily("chimeha_vrrp_last_transition_timestamp_seconds", "When the instance last changed state", labels=["instance"])
    last_fo = GaugeMetricFamily("chimeha_vrrp_last_failover_seconds", "Duration of the last takeover, last advert heard to VIP taken", labels=["instance"])
    for name, inst in snap["instances"].items():
        for s in STATES:
            state.add_metric([name, s], 1.0 if inst["state"] == s else 0.0)
        base.add_metric([name], inst["base_priority"])
        eff.add_metric([name], inst["effective_priority"])
        vips.add_metric([name], 1.0 if inst["vips_owned"] else 0.0)
        split.add_metric([name, inst["split_brain"]["peer"] or ""], 1.0 if inst["split_brain"]["active"] else 0.0)
        for k, family in counters.items():
            family.add_metric([name], inst[k])
        failovers.add_metric([name], inst["failovers"]["count"])
        for reason, n in sorted(inst["drops_by_reason"].items()):
            drops.add_metric([name, reason], n)
        if inst["last_transition"]:
            last.add_metric([name], inst["last_transition"]["at"])
        if inst["failovers"]["last_seconds"] is not None:
            last_fo.add_metric([name], inst["failovers"]["last_seconds"])
    yield from (state, base, eff, vips, split, *counters.values(), failovers, drops, last, last_fo)


def _script_metrics(snap: Snapshot) -> Iterator:
    ok = GaugeMetricFamily("chimeha_track_script_ok", "1 when the tracked script's last result is success, 0 when failed (absent until first run)", labels=["script"])
    code = GaugeMetricFamily("chimeha_track_script_last_exit", "Exit status of the tracked script's last run", labels=["script"])
    for name, sc in snap["scripts"].items():
        if sc["result"] != "unknown":
            ok.add_metric([name], 1.0 if sc["result"] == "ok" else 0.0)
        if sc["last_exit"] is not None:
            code.add_metric([name], sc["last_exit"])
    yield from (ok, code)


def _lvs_metrics(snap: Snapshot) -> Iterator:
    active = GaugeMetricFamily("chimeha_lvs_virtual_server_active", "1 when the virtual server is programmed in the data plane", labels=["virtual_server", "dataplane"])
    up = GaugeMetricFamily("chimeha_lvs_real_server_up", "1 when the real server passes its health checks", labels=["virtual_server", "real_server"])
    weight = GaugeMetricFamily("chimeha_lvs_real_server_weight", "Weight in use for the real server (0 when inhibited)", labels=["virtual_server", "real_server"])
    counters = {k: CounterMetricFamily(f"chimeha_lvs_real_server_{k}", f"Data-plane {k.replace('_', ' ')} for the real server",
                                       labels=["virtual_server", "real_server"]) for k in STAT_KEYS}
    for vs in snap["virtual_servers"]:
        active.add_metric([vs["name"], vs["dataplane"] or "none"], 1.0 if vs["active"] else 0.0)
        for rs in vs["real_servers"]:
            rs_name = rs["address"] if rs["port"] is None else f"{rs['address']}:{rs['port']}"
            up.add_metric([vs["name"], rs_name], 1.0 if rs["healthy"] else 0.0)
            weight.add_metric([vs["name"], rs_name], rs["weight"])
            for k in STAT_KEYS:
                counters[k].add_metric([vs["name"], rs_name], rs["stats"][k])
    yield from (active, up, weight, *counters.values())


def _lvs_sync_metrics(sync: dict | None) -> Iterator:
    """conntrackd (lvs_sync_daemon): running, role, last commit, replicated entries."""
    if not sync:
        return
    yield GaugeMetricFamily("chimeha_lvs_sync_running", "1 while conntrackd runs", value=1.0 if sync["running"] else 0.0)
    yield GaugeMetricFamily("chimeha_lvs_sync_master", "1 while this node commits replicated connections (master)",
                            value=1.0 if sync["role"] == "master" else 0.0)
    yield CounterMetricFamily("chimeha_lvs_sync_restarts", "conntrackd restarts after it exited", value=sync["restarts"])
    if sync["last_commit_at"] is not None:
        yield GaugeMetricFamily("chimeha_lvs_sync_last_commit_timestamp_seconds",
                                "Unix time of the last commit of the external cache (takeover)", value=sync["last_commit_at"])
    entries = GaugeMetricFamily("chimeha_lvs_sync_entries", "Connections in conntrackd's caches", labels=["cache"])
    for cache in ("internal", "external"):
        if sync.get(f"entries_{cache}") is not None:
            entries.add_metric([cache], sync[f"entries_{cache}"])
    yield entries


class Metrics:
    """The registry plus the event-fed series; :meth:`render` is the /metrics body."""

    def __init__(self, provider: Callable[[], Snapshot]):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(provider))
        self.transitions = Counter("chimeha_vrrp_transitions", "VRRP state transitions",
                                   ["instance", "from", "to"], registry=self.registry)
        self.failover = Histogram("chimeha_vrrp_failover_seconds",
                                  "Takeover duration measured by the daemon: last advert heard to VIP taken",
                                  ["instance"], buckets=FAILOVER_BUCKETS, registry=self.registry)

    def on_entry(self, entry: dict) -> None:
        """Count a journal entry (transitions by from/to; every other count is the core's, in the snapshot)."""
        if entry.get("kind") == "transition":
            inst = str(entry.get("instance", "?"))
            self.transitions.labels(inst, str(entry.get("from", "?")), str(entry.get("to", "?"))).inc()

    def observe_failover(self, instance: str, seconds: float) -> None:
        self.failover.labels(instance).observe(max(0.0, float(seconds)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
