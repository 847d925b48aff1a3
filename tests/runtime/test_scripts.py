"""The no-shell script runner and vrrp_script tracking, with real processes."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from chimeha.runtime.scripts import ScriptTracker, run_program


async def test_exit_status_decides_success():
    ok = await run_program(["/bin/true"], 5)
    bad = await run_program(["/bin/sh", "-c", "exit 3"], 5)
    assert ok.ok and ok.returncode == 0
    assert not bad.ok and bad.returncode == 3 and "exit status 3" in bad.describe()


async def test_no_shell_interpretation_of_arguments(tmp_path):
    marker = tmp_path / "x"
    # With a shell, ';' would run touch; exec'd directly it is just an argument to echo.
    res = await run_program(["/bin/echo", "hi;", "touch", str(marker)], 5)
    assert res.ok
    assert not marker.exists()


async def test_missing_program_is_a_failure_with_words():
    res = await run_program(["/nonexistent/chk"], 5)
    assert not res.ok and res.returncode is None
    assert "/nonexistent/chk" in res.error and "No such file" in res.error


async def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    # The script forks a grandchild that would outlive a kill of the script alone.
    code = f"import os,time,subprocess; p=subprocess.Popen(['sleep','30']); open({str(pidfile)!r},'w').write(str(p.pid)); time.sleep(30)"
    started = time.monotonic()
    res = await run_program([sys.executable, "-c", code], 0.5)
    elapsed = time.monotonic() - started
    assert res.timed_out and not res.ok
    assert elapsed < 5
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        # a killed child of a killed parent may linger as a zombie until reaped by init
        with open(f"/proc/{grandchild}/stat") as fh:
            if fh.read().split(")")[1].split()[0] == "Z":
                break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("grandchild survived the timeout kill")


async def test_unknown_script_user_is_reported():
    res = await run_program(["/bin/true"], 5, user="no-such-user-chimeha")
    assert not res.ok and "no-such-user-chimeha" in res.error


async def test_tracker_applies_fall_and_rise(tmp_path):
    state = tmp_path / "state"
    state.write_text("0")
    script = [sys.executable, "-c", f"import sys; sys.exit(int(open({str(state)!r}).read()))"]
    changes = []
    tr = ScriptTracker("chk", tuple(script), interval=0.05, timeout=30, rise=2, fall=3,
                       on_change=lambda n, ok, res: changes.append((n, ok)))
    # Driven run by run so the assertion does not depend on timing.
    for _ in range(3):
        await tr.run_once()
    assert changes == [] and tr.state.ok is True
    state.write_text("1")
    await tr.run_once()
    await tr.run_once()
    assert changes == []  # two failures < fall 3
    await tr.run_once()
    assert changes == [("chk", False)]
    state.write_text("0")
    await tr.run_once()
    assert changes == [("chk", False)]  # one success < rise 2
    await tr.run_once()
    assert changes == [("chk", False), ("chk", True)]
    snap = tr.snapshot()
    assert snap["runs"] == 8 and snap["ok"] is True and snap["last"]["returncode"] == 0


async def test_tracker_init_fail_starts_failed_and_recovers():
    changes = []
    tr = ScriptTracker("chk", ("/bin/true",), interval=0.05, init_fail=True,
                       on_change=lambda n, ok, res: changes.append(ok))
    assert tr.state.ok is False
    await tr.run_once()
    assert changes == [True]


async def test_tracker_loop_runs_periodically_and_stops():
    tr = ScriptTracker("chk", ("/bin/true",), interval=0.05)
    tr.start()
    deadline = time.monotonic() + 10
    while tr.runs < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await tr.stop()
    runs = tr.runs
    assert runs >= 3
    await asyncio.sleep(0.2)
    assert tr.runs == runs


@pytest.mark.system  # needs root: the script must be root-owned for "writable by everyone" to be the reason
def test_script_security_refuses_a_world_writable_script(tmp_path):
    from chimeha.runtime.scripts import insecure_reason

    script = tmp_path / "chk.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o777)
    reason = insecure_reason(str(script))
    assert reason and "writable by everyone" in reason
    assert insecure_reason("/bin/true") is None  # root-owned all the way up


async def test_tracker_with_security_never_runs_an_insecure_script(tmp_path):
    marker = tmp_path / "ran"
    script = tmp_path / "chk.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o777)
    changes = []
    tr = ScriptTracker("chk", (str(script),), interval=1, secure=True,
                       on_change=lambda n, ok, res: changes.append((ok, res.error)))
    res = await tr.run_once()
    assert not res.ok and "enable_script_security" in res.error
    assert not marker.exists()
    assert changes and changes[0][0] is False
