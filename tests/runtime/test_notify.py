"""Notify scripts and FIFO lines in keepalived's formats."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from types import SimpleNamespace

from chimeha.runtime.notify import Notifier, NotifyFifo, fifo_line


def test_fifo_line_format():
    assert fifo_line("INSTANCE", "VI_1", "MASTER", 255) == 'INSTANCE "VI_1" MASTER 255\n'
    assert fifo_line("GROUP", "G1", "BACKUP", None) == 'GROUP "G1" BACKUP 0\n'


async def test_fifo_is_created_and_receives_lines(tmp_path):
    path = str(tmp_path / "fifo")
    fifo = NotifyFifo(path)
    fifo.open()
    try:
        assert stat.S_ISFIFO(os.stat(path).st_mode)
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        n = Notifier([fifo])
        n.notify("INSTANCE", "VI_1", "BACKUP", 100, None)
        n.notify("INSTANCE", "VI_1", "MASTER", 100, None)
        data = os.read(reader, 4096).decode()
        os.close(reader)
        assert data == 'INSTANCE "VI_1" BACKUP 100\nINSTANCE "VI_1" MASTER 100\n'
    finally:
        fifo.close()


def test_fifo_path_that_is_a_regular_file_is_refused(tmp_path):
    path = tmp_path / "plain"
    path.write_text("x")
    fifo = NotifyFifo(str(path))
    try:
        fifo.open()
    except OSError as exc:
        assert "not a FIFO" in str(exc)
    else:
        raise AssertionError("a regular file was accepted as FIFO")


async def test_specific_then_generic_script_with_four_arguments(tmp_path):
    out = tmp_path / "calls"
    rec = [sys.executable, "-c",
           f"import sys; open({str(out)!r},'a').write(' '.join(sys.argv[1:])+'\\n')"]
    cfg = SimpleNamespace(notify_master=tuple(rec + ["to-master"]), notify_backup=None,
                          notify_fault=None, notify_stop=None, notify=tuple(rec + ["generic"]))
    n = Notifier()
    n.notify("INSTANCE", "VI_1", "MASTER", 254, cfg)
    n.notify("INSTANCE", "VI_1", "BACKUP", 254, cfg)
    await n.drain(10)
    lines = out.read_text().splitlines()
    # MASTER: notify_master first, then notify with the 4 arguments; BACKUP: only notify.
    assert lines[:2] == ["to-master", "generic INSTANCE VI_1 MASTER 254"]
    assert "generic INSTANCE VI_1 BACKUP 254" in lines[2:]
    assert len(lines) == 3


async def test_failing_notify_script_does_not_raise(tmp_path):
    cfg = SimpleNamespace(notify_master=("/nonexistent/notify",), notify=None)
    n = Notifier()
    n.notify("INSTANCE", "VI_1", "MASTER", 100, cfg)
    await n.drain(5)
    assert n.executed == [("/nonexistent/notify",)]
