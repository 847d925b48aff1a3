"""runtime/scripts.py beyond test_scripts.py: results' words, env, users, wake, hooks, script security paths."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import pytest
from rtfakes import until

from chimeha.runtime.scripts import ScriptResult, ScriptTracker, insecure_reason, run_program, stop_all


@pytest.mark.parametrize("res, words", [
    (ScriptResult(False, None, error="cannot run /x: Permission denied"), "cannot run /x: Permission denied"),
    (ScriptResult(False, None, timed_out=True, duration=1.23456), "timed out after 1.235 s (killed)"),
    (ScriptResult(False, 2), "exit status 2"),
    (ScriptResult(True, 0), "exit status 0"),
])
def test_a_result_describes_itself_in_operator_words(res, words):
    assert res.describe() == words


async def test_an_empty_command_is_a_failure_not_an_exception():
    res = await run_program([], 1)
    assert (res.ok, res.returncode, res.error) == (False, None, "empty command")


async def test_a_non_executable_file_is_a_clear_failure(tmp_path):
    prog = tmp_path / "chk"
    prog.write_text("#!/bin/sh\nexit 0\n")
    prog.chmod(0o644)
    res = await run_program([str(prog)], 5)
    assert not res.ok and res.error == f"cannot run {prog}: Permission denied"


async def test_env_is_passed_exactly_when_given(tmp_path):
    out = tmp_path / "env"
    code = f"import os; open({str(out)!r},'w').write(repr(sorted(k for k in os.environ if k != 'LC_CTYPE')))"
    res = await run_program([sys.executable, "-c", code], 10, env={"ONLY": "1"})
    assert res.ok and out.read_text() == "['ONLY']"


async def test_exit_codes_and_signals_are_failures_with_their_status():
    res = await run_program(["/bin/sh", "-c", "kill -9 $$"], 5)
    assert not res.ok and res.returncode == -9 and not res.timed_out


async def test_unknown_group_is_reported():
    res = await run_program(["/bin/true"], 5, user="root", group="no-such-group-chimeha")
    assert not res.ok and "no-such-group-chimeha" in res.error


@pytest.mark.system  # needs root to switch users
async def test_a_script_runs_as_the_configured_user_and_group(tmp_path):
    import grp
    import pwd
    import shutil
    import tempfile
    from pathlib import Path

    shared = tempfile.mkdtemp(prefix="chimeha-rt-")
    os.chmod(shared, 0o777)
    out = Path(shared) / "ids"
    try:
        group = "nogroup" if _has_group("nogroup") else "nobody"
        res = await run_program(["/bin/sh", "-c", f"echo $(id -u) $(id -g) $(id -G) > {out}"], 5,
                                user="nobody", group=group)
        assert res.ok, res.describe()
        uid, gid, *groups = out.read_text().split()
        assert int(uid) == pwd.getpwnam("nobody").pw_uid and int(gid) == grp.getgrnam(group).gr_gid
        assert groups == [gid]  # root's supplementary groups are dropped
    finally:
        shutil.rmtree(shared)


def _has_group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


# -- ScriptTracker -----------------------------------------------------------------------------
def test_timeout_defaults_to_the_interval_and_counts_are_at_least_one():
    tr = ScriptTracker("chk", ("/bin/true",), interval=3, rise=0, fall=-2)
    assert tr.timeout == 3.0 and tr.interval == 3.0
    assert ScriptTracker("chk", ("/bin/true",), interval=0).interval == 0.01  # never a busy loop
    assert ScriptTracker("chk", ("/bin/true",), interval=3, timeout=0.5).timeout == 0.5


async def test_wake_runs_the_script_at_once_instead_of_at_its_interval():
    tr = ScriptTracker("chk", ("/bin/true",), interval=30)
    tr.start()
    try:
        await until(lambda: tr.runs == 1, 5, "the first run")
        await asyncio.sleep(0.1)
        assert tr.runs == 1  # the next one is 30 s away
        tr.wake()
        await until(lambda: tr.runs == 2, 5, "the early run")
        assert tr.woken == 1
    finally:
        await tr.stop()
    tr.wake()  # stopped: ignored
    assert tr.woken == 1


async def test_result_hooks_see_every_run_and_a_broken_hook_is_contained(caplog):
    seen = []

    def broken(_res):
        raise RuntimeError("hook bug")

    tr = ScriptTracker("chk", ("/bin/false",), interval=1, fall=3)
    tr.result_hooks += [broken, seen.append]
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime.scripts"):
        for _ in range(2):
            await tr.run_once()
    assert [r.returncode for r in seen] == [1, 1] and tr.state.ok is True  # 2 < fall 3
    assert caplog.text.count("result hook failed") == 2


async def test_a_broken_on_change_does_not_stop_the_checks(caplog):
    def broken(*_a):
        raise RuntimeError("callback bug")

    tr = ScriptTracker("chk", ("/bin/false",), interval=0.02, on_change=broken)
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime.scripts"):
        tr.start()
        try:
            await until(lambda: tr.runs >= 3, 5, "runs after the callback failed")
        finally:
            await tr.stop()
    assert "vrrp_script chk: unexpected error" in caplog.text


async def test_a_start_error_is_logged_once_not_every_interval(caplog):
    tr = ScriptTracker("chk", ("/nonexistent/chk",), interval=0.02)
    with caplog.at_level(logging.WARNING, logger="chimeha.runtime.scripts"):
        for _ in range(5):
            await tr.run_once()
    assert caplog.text.count("vrrp_script chk: cannot run /nonexistent/chk") == 1
    assert tr.snapshot()["last"]["error"] == "cannot run /nonexistent/chk: No such file or directory"


async def test_stop_all_reports_how_many_were_abandoned():
    class Stuck:
        async def stop(self, timeout):
            return False

    class Fine:
        async def stop(self, timeout):
            return True

    class Broken:
        async def stop(self, timeout):
            raise RuntimeError("x")

    assert await stop_all([]) == 0
    assert await stop_all([Fine(), Stuck(), Broken(), Fine()]) == 2


async def test_start_twice_runs_one_loop():
    tr = ScriptTracker("chk", ("/bin/true",), interval=0.05)
    tr.start()
    first = tr._task  # noqa: SLF001
    tr.start()
    assert tr._task is first  # noqa: SLF001
    await tr.stop()


# -- enable_script_security: where the rule looks --------------------------------------------
@pytest.mark.system  # needs root: files must be chown-able
def test_insecure_reason_names_the_file_or_directory_at_fault():
    import shutil
    import tempfile
    from pathlib import Path

    # Under /run (root, 0755 all the way up): pytest's tmp_path sits in /tmp, itself world-writable.
    base = Path(tempfile.mkdtemp(prefix="chimeha-rt-", dir="/run"))
    try:
        _walk_the_rule(base)
    finally:
        shutil.rmtree(base)


def _walk_the_rule(tmp_path):
    os.chmod(tmp_path, 0o755)
    d = tmp_path / "bin"
    d.mkdir(mode=0o755)
    prog = d / "chk"
    prog.write_text("#!/bin/sh\nexit 0\n")
    prog.chmod(0o755)
    assert insecure_reason(str(prog)) is None
    os.chown(prog, 65534, 0)
    assert insecure_reason(str(prog)) == f"{prog} is owned by uid 65534, not root"
    os.chown(prog, 0, 0)
    os.chown(prog, 0, 65534)
    prog.chmod(0o775)
    assert insecure_reason(str(prog)) == f"{prog} is writable by group 65534"
    prog.chmod(0o755)
    d.chmod(0o777)
    assert insecure_reason(str(prog)) == f"{d} is writable by everyone"  # a directory above counts
    d.chmod(0o1777)
    assert insecure_reason(str(prog)) is None  # sticky and root's, like /tmp: keepalived accepts it
    d.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(prog)
    assert insecure_reason(str(link)) is None  # the real file is judged
    assert insecure_reason("/nonexistent/chk") is None  # "cannot run" says it instead
    assert insecure_reason("true") is None  # found on PATH


async def test_a_script_run_as_another_user_is_not_refused_by_the_root_rule(tmp_path):
    prog = tmp_path / "chk"
    prog.write_text("#!/bin/sh\nexit 0\n")
    prog.chmod(0o777)
    assert ScriptTracker("chk", (str(prog),), secure=True, user="nobody").refused is None
    assert ScriptTracker("chk", (str(prog),), secure=False).refused is None
    assert ScriptTracker("chk", (str(prog),), secure=True).refused is not None
