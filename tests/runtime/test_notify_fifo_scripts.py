"""runtime/notify.py against real FIFOs and real scripts: keepalived's line format, order, bounds, users."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rtfakes import FakeNetlink, SocketFactory, instance_conf, load_ok, until

from chimeha.runtime import notify
from chimeha.runtime.daemon import Daemon
from chimeha.runtime.notify import Notifier, NotifyFifo
from chimeha.vrrp.events import State


def recorder(tmp_path, name="calls", sleep=0.0):
    """argv of a script that appends its arguments (and uid) to a file, after ``sleep`` seconds."""
    out = tmp_path / name
    code = (f"import os,sys,time; time.sleep({sleep}); "
            f"open({str(out)!r},'a').write(' '.join(sys.argv[1:])+'\\n')")
    return [sys.executable, "-c", code], out


def scripts(**kw):
    base = dict(notify_master=None, notify_backup=None, notify_fault=None, notify_stop=None, notify=None)
    base.update({k: tuple(v) if v else None for k, v in kw.items()})
    return SimpleNamespace(**base)


def read_fifo(fd) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode()


# -- the FIFO ----------------------------------------------------------------------------------
def test_an_existing_fifo_is_reused_with_its_mode(tmp_path):
    path = tmp_path / "f"
    os.mkfifo(path, 0o640)
    fifo = NotifyFifo(str(path))
    fifo.open()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        assert fifo.write('INSTANCE "VI_1" MASTER 100\n') is True
    finally:
        fifo.close()


def test_a_created_fifo_is_private(tmp_path):
    path = tmp_path / "f"
    fifo = NotifyFifo(str(path))
    old = os.umask(0)
    try:
        fifo.open()
    finally:
        os.umask(old)
        fifo.close()
    assert stat.S_ISFIFO(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_full_fifo_drops_lines_without_blocking(tmp_path, caplog):
    fifo = NotifyFifo(str(tmp_path / "f"))
    fifo.open()
    line = 'INSTANCE "VI_1" MASTER 100\n'
    t0 = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="chimeha.runtime.notify"):
            results = [fifo.write(line) for _ in range(10000)]  # 270 kB > a pipe's 64 kB
    finally:
        fifo.close()
    assert time.monotonic() - t0 < 5
    assert results[0] is True and results[-1] is False  # nobody reads: the daemon is never blocked
    assert "is full; dropped: INSTANCE \"VI_1\" MASTER 100" in caplog.text


def test_write_before_open_or_after_close_is_a_no_op(tmp_path):
    fifo = NotifyFifo(str(tmp_path / "f"))
    assert fifo.write("x\n") is False
    fifo.open()
    fifo.close()
    fifo.close()  # twice is fine
    assert fifo.write("x\n") is False


async def test_every_fifo_gets_every_line_in_keepalived_format(tmp_path):
    fifos = [NotifyFifo(str(tmp_path / n)) for n in ("a", "b")]
    for f in fifos:
        f.open()
    readers = [os.open(f.path, os.O_RDONLY | os.O_NONBLOCK) for f in fifos]
    try:
        n = Notifier(fifos)
        n.notify("INSTANCE", "VI_1", "MASTER", 100, None)
        n.notify("GROUP", "G1", "MASTER", None, None)
        n.notify("INSTANCE", "VI_1", "FAULT", 0, None)
        for r in readers:
            assert read_fifo(r) == 'INSTANCE "VI_1" MASTER 100\nGROUP "G1" MASTER 0\nINSTANCE "VI_1" FAULT 0\n'
    finally:
        for r in readers:
            os.close(r)
        n.close()


# -- scripts -----------------------------------------------------------------------------------
async def test_each_state_runs_its_own_script_then_notify(tmp_path):
    rec, out = recorder(tmp_path)
    cfg = scripts(notify_master=rec + ["M"], notify_backup=rec + ["B"], notify_fault=rec + ["F"],
                  notify_stop=rec + ["S"], notify=rec + ["N"])
    n = Notifier()
    for st in ("BACKUP", "MASTER", "FAULT", "STOP"):
        n.notify("INSTANCE", "VI_1", st, 90, cfg)
    await n.drain(20)
    assert out.read_text().splitlines() == [
        "B", "N INSTANCE VI_1 BACKUP 90", "M", "N INSTANCE VI_1 MASTER 90",
        "F", "N INSTANCE VI_1 FAULT 90", "S", "N INSTANCE VI_1 STOP 90"]


async def test_group_notify_gets_priority_zero(tmp_path):
    rec, out = recorder(tmp_path)
    n = Notifier()
    n.notify("GROUP", "G1", "BACKUP", None, scripts(notify=rec))
    await n.drain(10)
    assert out.read_text() == "GROUP G1 BACKUP 0\n"


async def test_a_slow_script_does_not_let_the_next_transition_overtake_it(tmp_path):
    slow, out = recorder(tmp_path, sleep=1.5)
    fast, _ = recorder(tmp_path)
    n = Notifier()
    n.notify("INSTANCE", "VI_1", "MASTER", 100, scripts(notify_master=slow + ["first"]))
    n.notify("INSTANCE", "VI_1", "BACKUP", 100, scripts(notify_backup=fast + ["second"]))
    n.notify("INSTANCE", "VI_2", "BACKUP", 100, scripts(notify_backup=fast + ["other-instance"]))
    await n.drain(10)
    lines = out.read_text().splitlines()
    assert lines.index("first") < lines.index("second")  # one instance: transition order
    assert lines.index("other-instance") < lines.index("first")  # another instance does not wait


async def test_a_hung_script_delays_the_next_ones_only_up_to_order_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(notify, "ORDER_WAIT", 0.3)
    # "Hung" is 4 s, >10 times ORDER_WAIT: the next script must run long before it ends
    # (drain then waits for it, so a longer hang only costs test time).
    hung, out = recorder(tmp_path, sleep=4)
    fast, _ = recorder(tmp_path)
    n = Notifier()
    n.notify("INSTANCE", "VI_1", "MASTER", 100, scripts(notify_master=hung + ["hung"]))
    n.notify("INSTANCE", "VI_1", "BACKUP", 100, scripts(notify_backup=fast + ["next"]))
    await until(lambda: out.exists() and "next" in out.read_text(), 3.5, "the next script despite the hung one")
    assert "hung" not in out.read_text()
    await n.drain(15)


async def test_a_failing_script_is_logged_and_the_following_ones_still_run(tmp_path, caplog):
    rec, out = recorder(tmp_path)
    n = Notifier()
    with caplog.at_level(logging.WARNING, logger="chimeha.runtime.notify"):
        n.notify("INSTANCE", "VI_1", "MASTER", 100,
                 scripts(notify_master=["/bin/sh", "-c", "exit 3"], notify=rec))
        await n.drain(10)
    assert "notify /bin/sh -c exit 3: exit status 3" in caplog.text
    assert out.read_text() == "INSTANCE VI_1 MASTER 100\n"


async def test_scripts_run_with_the_daemons_environment_and_no_shell(tmp_path, monkeypatch):
    out = tmp_path / "env"
    monkeypatch.setenv("CHIMEHA_TEST_MARK", "seen")
    code = f"import os; open({str(out)!r},'w').write(os.environ.get('CHIMEHA_TEST_MARK', '-'))"
    n = Notifier()
    n.notify("INSTANCE", "VI_1", "MASTER", 100, scripts(notify_master=[sys.executable, "-c", code, "$HOME;"]))
    await n.drain(10)
    assert out.read_text() == "seen"


async def test_the_history_of_executed_scripts_stays_bounded():
    n = Notifier()
    cfg = scripts(notify_master=["/bin/true"])
    for _ in range(120):
        n.notify("INSTANCE", "VI_1", "MASTER", 100, cfg)
    await n.drain(30)
    assert len(n.executed) == 100 and n.executed[-1] == ("/bin/true",)


async def test_no_scripts_no_task():
    n = Notifier()
    n.notify("INSTANCE", "VI_1", "MASTER", 100, scripts())
    n.notify("INSTANCE", "VI_1", "MASTER", 100, None)
    assert n._tasks == set()  # noqa: SLF001 - nothing to wait for at shutdown
    await n.drain(0.1)


@pytest.mark.system  # needs root to switch users
async def test_scripts_run_as_script_user(tmp_path):
    nobody = pwd.getpwnam("nobody")
    shared = tempfile.mkdtemp(prefix="chimeha-rt-")  # pytest's tmp_path is not reachable for nobody
    os.chmod(shared, 0o777)
    out = Path(shared) / "uid"
    n = Notifier(user="nobody")  # /bin/sh: the test's python lives under root's home, closed to nobody
    n.notify("INSTANCE", "VI_1", "MASTER", 100, scripts(notify_master=["/bin/sh", "-c", f"id -u > {out}"]))
    try:
        await n.drain(10)
        assert out.read_text().strip() == str(nobody.pw_uid)
    finally:
        shutil.rmtree(shared)


# -- end to end through the daemon -------------------------------------------------------------
async def test_daemon_writes_keepalived_fifo_lines_for_its_transitions(tmp_path):
    fifo = tmp_path / "notify.fifo"
    text = (f"global_defs {{\n vrrp_notify_fifo {fifo}\n}}\n"
            + instance_conf("VI_1", vrid=1, priority=120)
            + instance_conf("VI_2", vrid=2, vip="10.0.0.101/24")
            + "vrrp_sync_group G1 {\n group {\n  VI_1\n  VI_2\n }\n}\n")
    d = Daemon(str(tmp_path / "k.conf"), load_ok(text), socket_factory=SocketFactory(), netlink=FakeNetlink())
    await d.start()
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        await until(lambda: d.node.state("VI_1") is State.MASTER and d.node.state("VI_2") is State.MASTER,
                    what="both MASTER")
        await asyncio.sleep(0.05)
    finally:
        await d.stop()
    lines = read_fifo(reader).splitlines()
    os.close(reader)
    # Every member's own line first, then the group's (a reader acting on GROUP sees all members).
    assert lines == ['INSTANCE "VI_1" BACKUP 120', 'INSTANCE "VI_2" BACKUP 100', 'GROUP "G1" BACKUP 0',
                     'INSTANCE "VI_1" MASTER 120', 'INSTANCE "VI_2" MASTER 100', 'GROUP "G1" MASTER 0',
                     'INSTANCE "VI_1" STOP 120', 'INSTANCE "VI_2" STOP 100', 'GROUP "G1" STOP 0']
