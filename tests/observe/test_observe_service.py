import asyncio
import os
import signal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chimeha.observe import attach
from chimeha.observe.dumps import DumpPaths
from chimeha.vrrp.events import PriorityChanged, SplitBrain, State, StateChanged

from observe_fakes import FakeDaemon


def metric(obs, name, **labels):
    for fam in text_string_to_metric_families(obs.metrics.render().decode()):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def make(tmp_path, **kw):
    paths = DumpPaths(str(tmp_path / "k.data"), str(tmp_path / "k.stats"), str(tmp_path / "k.json"))
    kw.setdefault("signals", False)
    kw.setdefault("metrics", True)  # the registry without an HTTP listener
    return attach(FakeDaemon(), control_path=None, metrics_addr=None, journal_path=str(tmp_path / "j.jsonl"),
                  dump_paths=paths, **kw)


def test_failover_measured_by_the_daemon_lands_on_the_entry_and_histogram(tmp_path):
    obs = make(tmp_path)
    obs.poll()  # the failover that happened before attach is counted once
    inst = obs.daemon.snap["instances"]["VI_2"]
    inst["state"] = "MASTER"
    inst["failovers"] = {"count": 1, "last_seconds": 3.0121, "recent": [3.0121]}
    entry = obs.on_transition(StateChanged(instance="VI_2", old=State.BACKUP, new=State.MASTER,
                                           reason="no advertisement from 192.168.231.12 for 3.008 s", at=1.0))
    assert entry["failover_seconds"] == 3.0121
    obs.poll()  # the watcher must not count it a second time
    assert metric(obs, "chimeha_vrrp_failover_seconds_count", instance="VI_2") == 1
    assert metric(obs, "chimeha_vrrp_failover_seconds_bucket", instance="VI_2", le="3.5") == 1
    assert metric(obs, "chimeha_vrrp_failover_seconds_bucket", instance="VI_2", le="3.0") == 0
    assert metric(obs, "chimeha_vrrp_failover_seconds_count", instance="VI_1") == 1


def test_failovers_past_the_daemons_cap_are_still_counted(tmp_path):
    obs = make(tmp_path)
    inst = obs.daemon.snap["instances"]["VI_2"]
    inst["failovers"] = {"count": 3, "last_seconds": 3.0, "recent": [1.0, 2.0, 3.0]}
    obs.poll()
    # A daemon that caps count at len(recent): the list shifts, the count does not grow.
    inst["failovers"] = {"count": 3, "last_seconds": 4.0, "recent": [2.0, 3.0, 4.0]}
    obs.poll()
    assert metric(obs, "chimeha_vrrp_failover_seconds_count", instance="VI_2") == 4
    assert metric(obs, "chimeha_vrrp_failover_seconds_sum", instance="VI_2") == 10.0


def test_split_brain_is_journaled_once_per_episode_and_resolved(tmp_path):
    obs = make(tmp_path)
    obs.poll()
    sb = SplitBrain(instance="VI_1", peer="192.168.231.12", peer_priority=255, local_priority=255,
                    reason="another master 192.168.231.12 (priority 255) for VRID 51", at=2.0)
    obs.daemon.snap["instances"]["VI_1"]["split_brain"] = {"active": True, "peer": "192.168.231.12", "since": 1e9 + 5}
    first = obs.on_event(sb)
    assert first["kind"] == "split_brain" and first["peer"] == "192.168.231.12" and first["to"] == "SPLIT_BRAIN"
    assert obs.on_event(sb) is None  # the next advert from the same master is the same episode
    obs.poll()
    assert [e["kind"] for e in obs.journal.entries()] == ["split_brain"]
    assert metric(obs, "chimeha_vrrp_split_brain", instance="VI_1", peer="192.168.231.12") == 1
    assert metric(obs, "chimeha_vrrp_split_brain_episodes_total", instance="VI_1") == 1
    obs.daemon.snap["instances"]["VI_1"]["split_brain"] = {"active": False, "peer": None, "since": None}
    obs.daemon.snap["instances"]["VI_1"]["state"] = "BACKUP"
    obs.poll()
    last = obs.journal.entries()[-1]
    assert (last["kind"], last["from"], last["to"]) == ("split_brain_resolved", "SPLIT_BRAIN", "BACKUP")


def test_split_brain_seen_only_in_the_snapshot_is_journaled_too(tmp_path):
    obs = make(tmp_path)
    obs.daemon.snap["instances"]["VI_2"]["split_brain"] = {"active": True, "peer": "192.168.231.12", "since": 1e9}
    obs.poll()
    obs.poll()
    entries = obs.journal.entries()
    assert len(entries) == 1 and entries[0]["peer"] == "192.168.231.12"
    assert "VRID 52" in entries[0]["reason"]


def test_priority_changes_are_journaled_and_unknown_actions_ignored(tmp_path):
    obs = make(tmp_path)
    e = obs.on_event(PriorityChanged(instance="VI_1", old=255, new=245,
                                     reason="track_script chk_server failed 1/1 times", at=3.0))
    assert (e["kind"], e["from"], e["to"]) == ("priority", "255", "245")
    assert obs.on_event(object()) is None
    assert len(obs.journal) == 1


async def test_reload_outcomes(tmp_path):
    obs = make(tmp_path)
    ok = await obs.reload()
    assert ok == {"ok": True, "message": "reloaded: 2 kept", "diagnostics": []}
    obs.daemon.reload_result = RuntimeError("disk on fire")
    bad = await obs.reload()
    assert bad["ok"] is False and "disk on fire" in bad["message"]

    class NoReload:
        def snapshot(self):
            return {}
    obs.daemon = NoReload()
    assert (await obs.reload())["message"] == "this daemon cannot reload its configuration"
    assert [e.get("ok") for e in obs.journal.entries() if e["kind"] == "reload"] == [True, False]


async def test_dump_signals_write_keepalived_files(tmp_path):
    obs = make(tmp_path, signals=True)
    await obs.start()
    try:
        for sig, name, start in ((signal.SIGUSR1, "k.data", "------< Global definitions >------"),
                                 (signal.SIGUSR2, "k.stats", "VRRP Instance: VI_1"),
                                 (signal.SIGRTMIN + 2, "k.json", '[{"data":')):
            os.kill(os.getpid(), sig)
            path = tmp_path / name
            for _ in range(500):
                if path.exists():
                    break
                await asyncio.sleep(0.01)
            assert path.read_text().startswith(start)
    finally:
        await obs.stop()
    # Handlers are removed on stop, so the runtime (or the default action) owns the signals again.
    loop = asyncio.get_running_loop()
    assert not any(loop.remove_signal_handler(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGRTMIN + 2))


async def test_start_failure_leaves_nothing_open(tmp_path):
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    obs = attach(FakeDaemon(), control_path=str(tmp_path / "c.sock"), metrics_addr=f"127.0.0.1:{port}",
                 journal_path=None, signals=False)
    try:
        with pytest.raises(OSError):
            await obs.start()
        assert not (tmp_path / "c.sock").exists()  # the control socket opened first was closed again
    finally:
        blocker.close()
        await blocker.wait_closed()


def test_split_brain_healing_is_journaled_at_once_without_waiting_for_a_poll(tmp_path):
    obs = make(tmp_path)
    obs.poll()
    start = SplitBrain(instance="VI_1", peer="192.168.231.12", peer_priority=255, local_priority=255,
                       reason="another master 192.168.231.12 (priority 255) for VRID 51", at=2.0)
    heal = SplitBrain(instance="VI_1", peer="192.168.231.12", peer_priority=255, local_priority=255,
                      reason="no advertisement from 192.168.231.12 for 3.008 s", at=5.0, healing=True)
    assert obs.on_event(heal) is None  # no episode open: nothing to resolve
    obs.daemon.snap["instances"]["VI_1"]["split_brain"] = {"active": True, "peer": "192.168.231.12", "since": 1e9}
    obs.on_event(start)
    obs.daemon.snap["instances"]["VI_1"]["split_brain"] = {"active": False, "peer": None, "since": None}
    entry = obs.on_event(heal)  # no poll in between: the entry comes from the event itself
    assert (entry["kind"], entry["from"], entry["to"]) == ("split_brain_resolved", "SPLIT_BRAIN", "MASTER")
    assert entry["reason"] == "no advertisement from 192.168.231.12 for 3.008 s"
    assert entry["peer"] == "192.168.231.12"
    assert [e["kind"] for e in obs.journal.entries()] == ["split_brain", "split_brain_resolved"]
    obs.poll()  # the watcher agrees and does not journal the end a second time
    assert obs.on_event(heal) is None
    assert [e["kind"] for e in obs.journal.entries()] == ["split_brain", "split_brain_resolved"]
    assert metric(obs, "chimeha_vrrp_split_brain_episodes_total", instance="VI_1") == 1
