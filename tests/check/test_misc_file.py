"""MISC_CHECK (real programs, no shell) and FILE_CHECK (real files)."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from chimeha.check import Target, probe
from chimeha.check.file import evaluate
from chimeha.config.model import FileCheck, MiscCheck, TrackFile

PY = sys.executable
T = Target("127.0.0.1", 80, weight=3)


def exiting(code: int) -> tuple[str, ...]:
    return (PY, "-c", f"import sys; sys.exit({code})")


@pytest.mark.parametrize("code,ok", [(0, True), (1, False), (3, False), (255, False)])
async def test_misc_exit_status_without_dynamic(code, ok):
    res = await probe(MiscCheck(misc_path=exiting(code)), T)
    assert res.ok is ok and res.weight is None
    assert f"exited {code}" in res.detail


@pytest.mark.parametrize("code,ok,weight", [(0, True, None), (1, False, None), (2, True, 0), (12, True, 10),
                                            (255, True, 253)])
async def test_misc_dynamic_weights(code, ok, weight):
    res = await probe(MiscCheck(misc_path=exiting(code), misc_dynamic=True), T)
    assert (res.ok, res.weight) == (ok, weight)


async def test_misc_runs_without_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    # Through a shell this would create the marker; as argv it is one harmless argument.
    res = await probe(MiscCheck(misc_path=(PY, "-c", "import sys; sys.exit(0)", f"; touch {marker}")), T)
    assert res.ok
    assert not marker.exists()


async def test_misc_timeout_kills_the_program_and_its_children(tmp_path):
    pidfile = tmp_path / "pids"
    script = ("import os, subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              f"open({str(pidfile)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
              "time.sleep(60)\n")
    t0 = time.monotonic()
    res = await probe(MiscCheck(misc_path=(PY, "-c", script), misc_timeout=1), T)
    assert not res.ok and "killed" in res.detail
    assert time.monotonic() - t0 < 10
    pids = [int(p) for p in pidfile.read_text().split()]
    for _ in range(200):
        alive = [p for p in pids if os.path.exists(f"/proc/{p}") and
                 open(f"/proc/{p}/stat").read().split()[2] != "Z"]
        if not alive:
            break
        await asyncio.sleep(0.02)
    assert not alive


async def test_misc_missing_program_is_a_clear_failure(tmp_path):
    res = await probe(MiscCheck(misc_path=(str(tmp_path / "nope.sh"),)), T)
    assert not res.ok and "cannot run" in res.detail and "nope.sh" in res.detail
    res = await probe(MiscCheck(), T)
    assert not res.ok and "no misc_path" in res.detail


@pytest.mark.system
async def test_misc_user_runs_as_that_user():
    import pwd
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="chimeha-misc-")  # pytest's tmp dirs are 0700 root: nobody cannot write there
    try:
        os.chmod(d, 0o777)
        out = os.path.join(d, "uid")
        res = await probe(MiscCheck(misc_path=("/bin/sh", "-c", f"id -u > {out}"), user="nobody"), T)
        assert res.ok, res.detail
        assert int(open(out).read()) == pwd.getpwnam("nobody").pw_uid
        res = await probe(MiscCheck(misc_path=("/bin/true",), user="no-such-user-chimeha"), T)
        assert not res.ok and "cannot run" in res.detail
    finally:
        shutil.rmtree(d)


# --- FILE_CHECK ----------------------------------------------------------------





def TF(file, weight=1, reverse=False):
    return TrackFile(name="t", file=file, weight=weight, weight_reverse=reverse)


async def test_file_check_weight_zero_semantics(tmp_path):
    f = tmp_path / "state"
    target = Target("127.0.0.1", 80, weight=3, track_files={"maint": TF(str(f), weight=0)})
    chk = FileCheck(track_file="maint")
    f.write_text("0\n")
    assert (await probe(chk, target)).ok
    f.write_text("1\n")
    res = await probe(chk, target)
    assert not res.ok and "non-zero" in res.detail
    f.write_text("")
    assert (await probe(chk, target)).ok


async def test_file_check_dynamic_weight_and_failures(tmp_path):
    f = tmp_path / "w"
    target = Target("127.0.0.1", 80, weight=3, track_files={"w": TF(str(f), weight=2)})
    f.write_text("4")
    res = await probe(FileCheck(track_file="w", dynamic=True), target)
    assert (res.ok, res.weight) == (True, 11)
    f.write_text("-2")
    res = await probe(FileCheck(track_file="w", dynamic=True), target)
    assert not res.ok and "-1" in res.detail
    # The checker's own weight (and reverse) overrides the track_file's.
    res = await probe(FileCheck(track_file="w", dynamic=True, weight=2, weight_reverse=True), target)
    assert (res.ok, res.weight) == (True, 7)
    rev = Target("127.0.0.1", 80, weight=3, track_files={"w": TF(str(f), weight=1, reverse=True)})
    res = await probe(FileCheck(track_file="w", dynamic=True), rev)
    assert (res.ok, res.weight) == (True, 5)
    f.write_text("lots")
    assert not (await probe(FileCheck(track_file="w"), target)).ok
    f.unlink()
    res = await probe(FileCheck(track_file="w"), target)
    assert not res.ok and str(f) in res.detail
    res = await probe(FileCheck(track_file="nope"), target)
    assert not res.ok and "unknown track_file 'nope'" in res.detail


def test_file_evaluate_rule():
    assert evaluate(0, 0, False, False, 1).ok
    assert not evaluate(-5, 0, False, False, 1).ok
    assert evaluate(5, 1, False, True, 1).weight == 6
    assert evaluate(5, 1, False, False, 1).weight is None
    assert not evaluate(5, 1, True, True, 1).ok
