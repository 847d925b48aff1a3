"""runtime/bgp.py and bgp_metrics.py without FRR: a fake speaker, a fake vtysh program, a node on a fake clock."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from rtfakes import FakeDaemon, instance_conf, until

from chimeha.config.build_bgp import build_bgp
from chimeha.runtime import bgp as bgp_mod
from chimeha.runtime.bgp import BgpManager, FrrSpeaker, SpeakerError, attach
from chimeha.runtime.bgp_metrics import bgp_metrics


def bgp_block(tmp_path, speaker="/nonexistent/bgpd") -> str:
    return ("chimeha_bgp {\n local_as 65010\n router_id 10.77.1.11\n neighbor 10.77.1.1 {\n  remote_as 65000\n }\n"
            f" announce {{\n  10.0.0.100\n }}\n state_dir {tmp_path / 'bgp'}\n speaker {speaker}\n}}\n")


class FakeSpeaker:
    """The FrrSpeaker interface; records the order of everything asked of it."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.rib: set[str] = set()
        self.alive = False
        self.starts = 0
        self.proc = None
        self.fail_apply: Exception | None = None

    @property
    def running(self):
        return self.alive

    async def start(self, timeout=10.0):
        self.calls.append(("start",))
        self.alive = True
        self.starts += 1

    async def apply(self, announce, withdraw):
        self.calls.append(("apply", list(announce), list(withdraw)))
        if self.fail_apply is not None:
            raise self.fail_apply
        self.rib = (self.rib | set(announce)) - set(withdraw)

    async def originated(self):
        return set(self.rib)

    async def sessions(self):
        return {"10.77.1.1": {"state": "Established", "prefixes_sent": len(self.rib)}}

    async def stop(self, grace=3.0):
        self.calls.append(("stop",))
        self.alive = False


@pytest.fixture
def no_nft(monkeypatch):
    """The ECMP masquerade would run nft in this namespace: record instead."""
    calls = []

    async def snat(self, on):
        calls.append(on)

    monkeypatch.setattr(BgpManager, "_snat", snat)
    return calls


def daemon_with_bgp(tmp_path):
    d = FakeDaemon(instance_conf() + bgp_block(tmp_path))
    diags: list = []
    bgp = build_bgp(d.config, diags)
    assert bgp is not None, [str(x) for x in diags]
    return d, bgp


def become_master(d):
    d.node.start(100.0)
    d.node.handle_timer(d.node.get_timer())
    for a in d.node.pop_actions():
        for hook in list(d.state_hooks):
            hook(a)


async def test_the_prefix_follows_the_instance_state_and_is_withdrawn_before_the_speaker_stops(tmp_path, no_nft):
    d, bgp = daemon_with_bgp(tmp_path)
    sp = FakeSpeaker()
    mgr = BgpManager(d, bgp, speaker=sp)
    await mgr.start()
    try:
        assert sp.rib == set()  # INIT: withheld
        assert mgr.snapshot()["withheld"] == {"10.0.0.100/32": "vrrp_instance VI_1 is INIT"}
        become_master(d)  # the state hook wakes the reconcile task
        await until(lambda: sp.rib == {"10.0.0.100/32"}, 3, "the announcement")
        assert ("apply", ["10.0.0.100/32"], []) in sp.calls and mgr.changes == 1
        d.node.set_tracked("lo", False, 101.0, kind="interface")  # FAULT: withdraw
        await until(lambda: sp.rib == set(), 3, "the withdrawal on FAULT")
        d.node.set_tracked("lo", True, 102.0, kind="interface")
        d.node.handle_timer(d.node.get_timer())
        await until(lambda: sp.rib == {"10.0.0.100/32"}, 3, "announced again")
    finally:
        await mgr.stop()
    tail = sp.calls[-2:]
    assert tail == [("apply", [], ["10.0.0.100/32"]), ("stop",)]  # withdraw first, then end the session
    assert mgr._on_state not in d.state_hooks and mgr.actual == set()  # noqa: SLF001
    assert no_nft == [True, False]


async def test_a_dead_speaker_is_restarted_and_its_errors_are_kept_bounded(tmp_path, no_nft, caplog, monkeypatch):
    monkeypatch.setattr(bgp_mod, "TICK", 0.02)
    d, bgp = daemon_with_bgp(tmp_path)
    sp = FakeSpeaker()
    mgr = BgpManager(d, bgp, speaker=sp)
    await mgr.start()
    try:
        become_master(d)
        await until(lambda: sp.rib, 3, "the announcement")
        sp.alive, sp.rib = False, set()  # bgpd crashed
        with caplog.at_level(logging.ERROR, logger="chimeha.bgp"):
            await until(lambda: sp.starts == 2 and sp.rib == {"10.0.0.100/32"}, 3, "restart and re-announce")
        assert "bgpd exited" in caplog.text
        assert mgr.snapshot()["speaker"]["running"] is True
    finally:
        await mgr.stop()


async def test_speaker_errors_never_take_the_loop_down(tmp_path, no_nft, monkeypatch):
    monkeypatch.setattr(bgp_mod, "TICK", 0.02)
    d, bgp = daemon_with_bgp(tmp_path)
    sp = FakeSpeaker()
    mgr = BgpManager(d, bgp, speaker=sp)
    await mgr.start()
    try:
        sp.fail_apply = SpeakerError("vtysh: no answer within 10 s")
        become_master(d)
        await until(lambda: mgr.errors, 3, "the error recorded")
        assert mgr.errors[-1] == "vtysh: no answer within 10 s" and len(mgr.errors) <= 5
        sp.fail_apply = None
        await until(lambda: sp.rib == {"10.0.0.100/32"}, 5, "the retry (after the loop's 1 s back-off)")
    finally:
        await mgr.stop()


async def test_attach_without_a_bgp_block_does_nothing():
    d = FakeDaemon(instance_conf())
    assert await attach(d) is None and d.state_hooks == []


async def test_attach_with_a_missing_speaker_logs_and_runs_without_bgp(tmp_path, caplog):
    d = FakeDaemon(instance_conf() + bgp_block(tmp_path))
    with caplog.at_level(logging.ERROR, logger="chimeha.bgp"):
        assert await attach(d) is None
    assert "/nonexistent/bgpd: not found (apt-get install frr); nothing is announced" in caplog.text
    assert d.state_hooks == []


# -- FrrSpeaker's vtysh driving, with a fake vtysh program ------------------------------------
RIB = json.dumps({"routes": {"10.0.0.100/32": [{"peerId": "(unspec)", "origin": "IGP", "path": ""}],
                             "10.9.9.0/24": [{"peerId": "10.77.1.1", "path": "65000"}]}})


def fake_vtysh(tmp_path, body: str) -> str:
    prog = tmp_path / "vtysh"
    log = tmp_path / "vtysh.argv"
    prog.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n{body}\n")
    prog.chmod(0o755)
    return str(prog)


async def test_vtysh_commands_go_to_our_own_vty_socket_and_originated_is_parsed(tmp_path):
    d, bgp = daemon_with_bgp(tmp_path)
    rib = tmp_path / "rib.json"
    rib.write_text(RIB)
    sp = FrrSpeaker(bgp, vtysh=fake_vtysh(tmp_path, f"cat {rib}"))
    assert await sp.originated() == {"10.0.0.100/32"}  # the peer's route is not ours
    await sp.apply(["10.0.0.100/32"], [])
    argv = (tmp_path / "vtysh.argv").read_text().splitlines()
    assert argv[0] == f"--vty_socket {bgp.state_dir} -d bgpd -c show bgp ipv4 unicast json"
    assert argv[1] == f"--vty_socket {bgp.state_dir} -d bgpd -c show bgp ipv6 unicast json"
    assert argv[2].startswith(f"--vty_socket {bgp.state_dir} -d bgpd -c ") and "10.0.0.100/32" in argv[2]


@pytest.mark.parametrize("body, words", [
    ("echo '% failed to connect to any daemons.'", "failed to connect"),
    ("echo 'bad command' >&2; exit 1", "bad command"),
])
async def test_vtysh_failures_are_speaker_errors_with_its_words(tmp_path, body, words):
    d, bgp = daemon_with_bgp(tmp_path)
    sp = FrrSpeaker(bgp, vtysh=fake_vtysh(tmp_path, body))
    with pytest.raises(SpeakerError, match=words):
        await sp.vtysh("show bgp summary json")


async def test_a_hung_vtysh_is_killed_after_its_timeout(tmp_path):
    d, bgp = daemon_with_bgp(tmp_path)
    sp = FrrSpeaker(bgp, vtysh=fake_vtysh(tmp_path, "exec sleep 30"))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(SpeakerError, match="no answer within 0 s"):
        await sp.vtysh("show bgp summary json", timeout=0.3)
    assert loop.time() - t0 < 5


async def test_missing_vtysh_and_missing_bgpd_say_what_to_install(tmp_path):
    d, bgp = daemon_with_bgp(tmp_path)
    sp = FrrSpeaker(bgp, vtysh="/nonexistent/vtysh")
    with pytest.raises(SpeakerError, match="cannot run vtysh: No such file or directory .apt-get install frr."):
        await sp.vtysh("show bgp summary json")
    with pytest.raises(SpeakerError, match="/nonexistent/bgpd: not found"):
        await sp.start()
    assert sp.running is False
    await sp.stop()  # never started: nothing to stop


# -- metrics -----------------------------------------------------------------------------------
def samples(families) -> dict:
    return {(f.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_bgp_metrics_from_the_snapshot():
    snap = {"peers": {"10.77.1.1": {"state": "Established", "prefixes_sent": 2},
                      "10.77.1.2": {"state": "Active", "prefixes_sent": None}},
            "announced": ["10.0.0.100/32"], "withheld": {"10.0.0.100/32": "x", "10.0.0.101/32": "no quorum"},
            "speaker": {"running": True}}
    got = samples(bgp_metrics(snap))
    assert got[("chimeha_bgp_session_up", (("peer", "10.77.1.1"),))] == 1.0
    assert got[("chimeha_bgp_session_up", (("peer", "10.77.1.2"),))] == 0.0
    assert got[("chimeha_bgp_session_state", (("peer", "10.77.1.2"), ("state", "Active")))] == 1.0
    assert got[("chimeha_bgp_session_state", (("peer", "10.77.1.2"), ("state", "Established")))] == 0.0
    assert got[("chimeha_bgp_prefixes_sent", (("peer", "10.77.1.1"),))] == 2.0
    assert got[("chimeha_bgp_prefixes_sent", (("peer", "10.77.1.2"),))] == 0.0
    # announced wins over a stale withheld entry; a withheld-only prefix reads 0
    assert got[("chimeha_bgp_announced", (("prefix", "10.0.0.100/32"),))] == 1.0
    assert got[("chimeha_bgp_announced", (("prefix", "10.0.0.101/32"),))] == 0.0
    assert got[("chimeha_bgp_speaker_running", ())] == 1.0
    assert sum(1 for k in got if k[0] == "chimeha_bgp_announced") == 2


def test_no_bgp_no_metrics():
    assert list(bgp_metrics(None)) == [] and list(bgp_metrics({})) == []
