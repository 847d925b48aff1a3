import asyncio
import os
import signal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chimeha.observe import attach
from chimeha.observe.dumps import DumpPaths
from chimeha.runtime.status import ReloadOutcome
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


def test_failover_measured_by_the_core_lands_on_the_entry_and_histogram(tmp_path):
    obs = make(tmp_path)
    obs.poll()
    # The snapshot's failover history (from before attach, or anything else in it) is not re-counted:
    # only the core's StateChanged feeds the histogram.
    obs.daemon.snap["instances"]["VI_2"]["failovers"] = {"count": 7, "last_seconds": 9.0, "recent": [9.0]}
    entry = obs.on_transition(StateChanged(instance="VI_2", old=State.BACKUP, new=State.MASTER,
                                           reason="no advertisement from 192.168.231.12 for 3.008 s", at=1.0,
                                           failover=3.0121))
    assert entry["failover_seconds"] == 3.0121
    obs.poll()
    assert metric(obs, "chimeha_vrrp_failover_seconds_count", instance="VI_2") == 1
    assert metric(obs, "chimeha_vrrp_failover_seconds_bucket", instance="VI_2", le="3.5") == 1
    assert metric(obs, "chimeha_vrrp_failover_seconds_bucket", instance="VI_2", le="3.0") == 0
    assert metric(obs, "chimeha_vrrp_failover_seconds_count", instance="VI_1") is None
    # The core's count of measured takeovers is exported as it is.
    assert metric(obs, "chimeha_vrrp_failovers_total", instance="VI_2") == 7
    unmeasured = obs.on_transition(StateChanged(instance="VI_2", old=State.INIT, new=State.MASTER,
                                                reason="startup", at=2.0))
    assert "failover_seconds" not in unmeasured
    assert metric(obs, "chimeha_vrrp_failover_seconds_count", instance="VI_2") == 1


def test_split_brain_starts_per_rival_and_ends_once_as_the_core_reports_them(tmp_path):
    obs = make(tmp_path)
    obs.poll()
    sb = SplitBrain(instance="VI_1", peer="192.168.231.12", peer_priority=254, local_priority=255,
                    reason="192.168.231.12 is also MASTER at lower priority 254 (ours 255)", at=2.0)
    first = obs.on_event(sb)
    assert (first["kind"], first["from"], first["to"]) == ("split_brain", "MASTER", "SPLIT_BRAIN")
    assert first["peer"] == "192.168.231.12" and first["peer_priority"] == 254
    assert first["reason"] == "192.168.231.12 is also MASTER at lower priority 254 (ours 255)"
    assert obs._summary_cached().startswith("VI_1 SPLIT BRAIN")
    second = obs.on_event(SplitBrain("VI_1", "192.168.231.13", 200, 255, "192.168.231.13 is also MASTER", 2.5))
    assert second["peer"] == "192.168.231.13"
    obs.poll()  # the watcher journals nothing: split brain is the core's, reported as events
    assert [e["kind"] for e in obs.journal.entries()] == ["split_brain", "split_brain"]
    obs.daemon.snap["instances"]["VI_1"]["state"] = "BACKUP"  # the core left MASTER, ending the episode
    end = obs.on_event(SplitBrain("VI_1", "192.168.231.13", 200, 255, "split brain over: higher priority", 3.0,
                                  healing=True))
    assert (end["kind"], end["from"], end["to"]) == ("split_brain_resolved", "SPLIT_BRAIN", "BACKUP")
    assert end["reason"] == "split brain over: higher priority" and end["peer"] == "192.168.231.13"
    assert not obs._summary_cached().startswith("VI_1 SPLIT BRAIN")


def test_split_brain_metrics_are_the_cores(tmp_path):
    obs = make(tmp_path)
    inst = obs.daemon.snap["instances"]["VI_1"]
    inst["split_brain"] = {"active": True, "peer": "192.168.231.12", "since": 1e9 + 5}
    inst["split_brain_episodes"] = 3
    obs.on_event(SplitBrain("VI_1", "192.168.231.12", 255, 255, "also MASTER", 2.0))
    assert metric(obs, "chimeha_vrrp_split_brain", instance="VI_1", peer="192.168.231.12") == 1
    assert metric(obs, "chimeha_vrrp_split_brain_episodes_total", instance="VI_1") == 3  # not 1 + 3


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
    assert [e.get("ok") for e in obs.journal.entries() if e["kind"] == "reload"] == [True, False]


async def test_a_reload_the_daemon_reports_is_journaled_once(tmp_path):
    obs = make(tmp_path)
    outcome = ReloadOutcome(False, ("k.conf:3: unknown keyword",), "invalid configuration; still running the old one",
                            5.0)

    async def reporting_reload():  # the real daemon hands its ReloadOutcome to the event hooks
        obs.on_event(outcome)
        return outcome.as_dict()
    obs.daemon.reload = reporting_reload
    answer = await obs.reload()
    assert answer == {"ok": False, "message": "invalid configuration; still running the old one",
                      "diagnostics": ["k.conf:3: unknown keyword"]}
    obs.on_event(ReloadOutcome(True, (), "reloaded: 1 instance(s) unchanged", 6.0))  # a SIGHUP reload
    assert [(e["ok"], e["reason"]) for e in obs.journal.entries() if e["kind"] == "reload"] == [
        (False, "invalid configuration; still running the old one"), (True, "reloaded: 1 instance(s) unchanged")]


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
