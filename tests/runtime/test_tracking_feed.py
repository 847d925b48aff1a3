"""runtime/tracking.py: every tracked object reports through one callback, and stop() is bounded.

Real scripts, files and processes; the results then feed VrrpNode.set_tracked through Daemon.tracked.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time

from rtfakes import FakeNetlink, SocketFactory, instance_conf, load_ok, until

from chimeha.runtime import tracking
from chimeha.runtime.daemon import Daemon
from chimeha.runtime.tracking import Trackers
from chimeha.vrrp.events import InstanceSpec, State, TrackSpec
from chimeha.vrrp.from_config import instance_specs


def trackers_for(text, fast_detect=True):
    cfg = load_ok(text)
    seen: list[tuple] = []
    # The instance's own interface (lo, always up) is tracked too; these tests look at the rest.
    tr = Trackers(cfg, instance_specs(cfg), lambda *a: seen.append(a) if a[:2] != ("interface", "lo") else None,
                  fast_detect=fast_detect)
    return tr, seen


def script_conf(state_file, extra="") -> str:
    """A vrrp_script that exits with the number held in ``state_file`` (a real program, exec'd)."""
    prog = state_file.with_name("chk.py")
    prog.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(int(open({str(state_file)!r}).read()))\n")
    prog.chmod(0o755)
    return (f'vrrp_script chk {{\n script "{prog}"\n interval 0.05\n timeout 10\n weight -30\n{extra}}}\n'
            + instance_conf(extra=" track_script {\n  chk\n }\n"))


async def test_a_script_flip_is_reported_as_script_kind_with_its_detail(tmp_path):
    state = tmp_path / "rc"
    state.write_text("0")
    tr, seen = trackers_for(script_conf(state, " fall 2\n"))
    tr.start()
    try:
        await until(lambda: tr.scripts["chk"].runs >= 2, what="two successful runs")
        assert seen == []  # starts OK: a success is no news
        state.write_text("4")
        await until(lambda: seen, what="the failure after fall 2")
        kind, name, ok, detail, value = seen[0]
        assert (kind, name, ok, value) == ("script", "chk", False, None)
        assert isinstance(detail, str) and detail  # the hysteresis' own words, shown in status
        assert tr.scripts["chk"].last.returncode == 4
        state.write_text("0")
        await until(lambda: len(seen) == 2, what="the recovery")
        assert seen[1][:3] == ("script", "chk", True)
    finally:
        await tr.stop()
    assert tr.scripts == {}


async def test_init_fail_reports_the_first_success(tmp_path):
    state = tmp_path / "rc"
    state.write_text("0")
    tr, seen = trackers_for(script_conf(state, " init_fail\n"))
    tr.start()
    try:
        await until(lambda: seen, what="the first success")
        assert seen[0][:3] == ("script", "chk", True)
    finally:
        await tr.stop()


async def test_a_track_script_with_no_vrrp_script_block_starts_nothing():
    cfg = load_ok(instance_conf())
    spec = InstanceSpec(name="VI_1", vrid=1, interface="lo", tracks=(TrackSpec(name="ghost", kind="script"),))
    tr = Trackers(cfg, [spec], lambda *a: None)
    tr.start()
    assert tr.scripts == {}
    await tr.stop()


async def test_fast_detect_hooks_understood_scripts_only_when_on():
    text = ('vrrp_script chk {\n script "/usr/bin/pgrep -x no-such-proc-chimeha"\n interval 5\n}\n'
            + instance_conf(extra=" track_script {\n  chk\n }\n"))
    on, _ = trackers_for(text)
    off, _ = trackers_for(text, fast_detect=False)
    on.start()
    off.start()
    try:
        assert len(on.scripts["chk"].result_hooks) == 1
        assert off.scripts["chk"].result_hooks == []
    finally:
        await on.stop()
        await off.stop()


async def test_track_file_value_and_init_file(tmp_path):
    f = tmp_path / "tf"
    text = (f'track_file tf {{\n file "{f}"\n weight 5\n init_file 7\n}}\n'
            + instance_conf(extra=" track_file {\n  tf\n }\n"))
    tr, seen = trackers_for(text)
    tr.start()
    try:
        assert f.read_text() == "7\n"  # written before the first poll
        assert seen == [("file", "tf", False, None, 7)]  # ok means "value 0"; the value itself rides along
        f.write_text("0\n")
        await until(lambda: len(seen) == 2, what="the new value")
        assert seen[1] == ("file", "tf", True, None, 0)
    finally:
        await tr.stop()
    f.write_text("9\n")
    await asyncio.sleep(0.7)  # longer than one 0.5 s poll
    assert len(seen) == 2  # stopped watchers report nothing


async def test_init_file_keeps_an_existing_value_unless_overwrite(tmp_path):
    f = tmp_path / "tf"
    f.write_text("3\n")
    text = (f'track_file tf {{\n file "{f}"\n init_file 7\n}}\n' + instance_conf(extra=" track_file {\n  tf\n }\n"))
    tr, seen = trackers_for(text)
    tr.start()
    await tr.stop()
    assert seen == [("file", "tf", False, None, 3)]
    tr, seen = trackers_for(text.replace("init_file 7", "init_file 7 overwrite"))
    tr.start()
    await tr.stop()
    assert seen == [("file", "tf", False, None, 7)]


async def test_init_file_that_cannot_be_written_is_logged_and_tracking_goes_on(tmp_path, caplog):
    f = tmp_path / "no-such-dir" / "tf"
    text = (f'track_file tf {{\n file "{f}"\n init_file 1\n}}\n' + instance_conf(extra=" track_file {\n  tf\n }\n"))
    tr, seen = trackers_for(text)
    with caplog.at_level(logging.WARNING, logger="chimeha.runtime"):
        tr.start()
    await tr.stop()
    assert f"track_file tf: cannot initialise {f}" in caplog.text
    assert seen == [("file", "tf", True, None, 0)]  # a missing file reads as 0


async def test_track_process_reports_quorum_as_ok():
    name = "chhrt" + str(time.monotonic_ns() % 1000000)
    text = (f"vrrp_track_process tp {{\n process {name}\n quorum 2\n}}\n"
            + instance_conf(extra=" track_process {\n  tp\n }\n"))
    tr, seen = trackers_for(text)
    code = f"import ctypes,time; ctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0); time.sleep(30)"
    procs = []
    tr.start()
    try:
        assert seen == [("process", "tp", False, "failed (0 processes, quorum 2)", None)]  # 0 < quorum 2
        procs.append(subprocess.Popen([sys.executable, "-c", code]))
        await asyncio.sleep(0.8)
        assert seen[-1][2] is False  # one is not a quorum of two
        procs.append(subprocess.Popen([sys.executable, "-c", code]))
        await until(lambda: seen[-1][2] is True, what="quorum reached with two processes")
        gone = procs.pop()
        gone.kill()
        gone.wait()  # reaped: a zombie still has a /proc entry with its name
        await until(lambda: seen[-1][2] is False, what="quorum lost again")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        await tr.stop()


async def test_track_interface_reports_once_for_many_instances():
    text = (instance_conf("VI_1", vrid=1, extra=" track_interface {\n  lo\n  nosuch9\n }\n")
            + instance_conf("VI_2", vrid=2, vip="10.0.0.101/24", extra=" track_interface {\n  lo\n }\n"))
    cfg = load_ok(text)
    seen: list[tuple] = []
    tr = Trackers(cfg, instance_specs(cfg), lambda *a: seen.append(a))
    tr.start()
    await tr.stop()
    # one watcher per object, not per instance; a missing interface is down
    assert sorted(seen) == [("interface", "lo", True, None, None), ("interface", "nosuch9", False, None, None)]


async def test_stop_is_bounded_when_the_scripts_never_stop(monkeypatch, tmp_path, caplog):
    state = tmp_path / "rc"
    state.write_text("0")
    tr, _ = trackers_for(script_conf(state))
    tr.start()
    real = tr.scripts["chk"]

    async def hang(_trackers):
        await asyncio.sleep(3600)

    monkeypatch.setattr(tracking, "stop_all", hang)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime"):
        await tr.stop(timeout=0.2)
    assert loop.time() - t0 < 1.5
    assert "1 vrrp_script tracker(s) did not stop within 0.2 s; cancelled" in caplog.text
    assert tr.scripts == {}
    await real.stop()  # the test's own clean-up of the real tracker


async def test_a_failing_stop_is_logged_and_the_rest_still_stops(monkeypatch, tmp_path, caplog):
    state = tmp_path / "rc"
    state.write_text("0")
    f = tmp_path / "tf"
    f.write_text("0")
    text = (f'track_file tf {{\n file "{f}"\n}}\n'
            + script_conf(state).replace(" track_script {", " track_file {\n  tf\n }\n track_script {"))
    tr, seen = trackers_for(text)
    tr.start()
    real = tr.scripts["chk"]

    async def broken(_trackers):
        raise RuntimeError("stop bug")

    monkeypatch.setattr(tracking, "stop_all", broken)
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime"):
        await tr.stop()
    assert "stopping a vrrp_script tracker failed: stop bug" in caplog.text
    n = len(seen)
    f.write_text("5")
    await asyncio.sleep(0.7)
    assert len(seen) == n  # the file watcher was stopped before the scripts
    await real.stop()


# -- results feed the node ---------------------------------------------------------------------
async def test_script_results_move_the_priority_of_a_running_daemon(tmp_path):
    state = tmp_path / "rc"
    state.write_text("0")
    text = script_conf(state).replace("priority 100", "priority 150")
    d = Daemon(str(tmp_path / "k.conf"), load_ok(text), socket_factory=SocketFactory(), netlink=FakeNetlink())
    await d.start()
    try:
        core = d.node.instance("VI_1")
        await until(lambda: core.state is State.MASTER, what="MASTER")
        assert core.priority == 150
        gen = d.generation
        state.write_text("1")
        await until(lambda: core.priority == 120, what="priority 150 - 30")
        assert d.generation > gen
        assert d.snapshot()["scripts"]["chk"]["result"] == "failed"
        state.write_text("0")
        await until(lambda: core.priority == 150, what="priority back to 150")
    finally:
        await d.stop()
    before = d.node.instance("VI_1").priority
    d.tracked("script", "chk", False)  # a late result after stop is ignored
    assert d.node.instance("VI_1").priority == before


async def test_a_sync_group_script_runs_once_and_feeds_every_member(tmp_path):
    """vrrp_sync_group track_script: one ScriptTracker; its failure puts both members (the group) in FAULT."""
    state = tmp_path / "rc"
    state.write_text("0")
    prog = tmp_path / "chk.py"
    prog.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(int(open({str(state)!r}).read()))\n")
    prog.chmod(0o755)
    text = (f'vrrp_script chk {{\n script "{prog}"\n interval 0.05\n timeout 10\n}}\n'
            "vrrp_sync_group G {\n group {\n  VI_1\n  VI_2\n }\n track_script {\n  chk\n }\n}\n"
            + instance_conf("VI_1", vrid=10, vip="10.0.0.100/24")
            + instance_conf("VI_2", vrid=11, vip="10.0.0.101/24"))
    d = Daemon(str(tmp_path / "k.conf"), load_ok(text), socket_factory=SocketFactory(), netlink=FakeNetlink())
    await d.start()
    try:
        a, b = d.node.instance("VI_1"), d.node.instance("VI_2")
        await until(lambda: a.state is State.MASTER and b.state is State.MASTER, what="both MASTER")
        assert list(d.scripts) == ["chk"]  # one runner for the group, not one per member
        state.write_text("1")
        await until(lambda: a.state is State.FAULT and b.state is State.FAULT, what="the group in FAULT")
        state.write_text("0")
        await until(lambda: a.state is State.MASTER and b.state is State.MASTER, what="the group back")
    finally:
        await d.stop()
