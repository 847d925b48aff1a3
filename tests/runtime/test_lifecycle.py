"""global_defs startup_script / shutdown_script: config, timeout (SIGTERM then SIGKILL), security."""

from __future__ import annotations

import os
import sys
import time

import pytest

from chimeha.config import loads
from chimeha.runtime.lifecycle import run_bounded, run_lifecycle


def conf(extra: str):
    res = loads("global_defs {\n" + extra + "\n}\n")
    return res


def test_config_defaults_and_timeouts():
    c = conf('startup_script "/bin/echo hi"\nshutdown_script /bin/true nobody\nshutdown_script_timeout 3').config
    gd = c.global_defs
    assert gd.startup_script.argv == ("/bin/echo", "hi") and gd.startup_script.timeout == 10.0
    assert gd.shutdown_script.argv == ("/bin/true",) and gd.shutdown_script.timeout == 3.0
    assert gd.shutdown_script.user == "nobody" and gd.startup_script.where.line == 2


def test_timeout_out_of_range_is_reported_and_ignored():
    res = conf("startup_script /bin/true\nstartup_script_timeout 1001")
    assert res.config.global_defs.startup_script.timeout == 10.0
    assert any(d.line == 3 and d.severity == "warning" for d in res.diagnostics)


def test_second_script_is_ignored():
    res = conf("startup_script /bin/true\nstartup_script /bin/false")
    assert res.config.global_defs.startup_script.argv == ("/bin/true",)
    assert any(d.line == 3 for d in res.diagnostics)


def test_root_script_without_security_warns():
    res = conf("shutdown_script /bin/true")
    assert any(d.code == "script-security" and d.line == 2 for d in res.diagnostics)
    res = conf("shutdown_script /bin/true\nenable_script_security")
    assert not any(d.code == "script-security" for d in res.diagnostics)


async def test_runs_and_reports_status(tmp_path):
    mark = tmp_path / "ran"
    res = await run_bounded(("/bin/sh", "-c", f"echo $$ > {mark}; exit 3"), 5)
    assert res.returncode == 3 and not res.ok and mark.exists()


async def test_timeout_sigterm_then_group_killed(tmp_path):
    # The script traps SIGTERM (records it) and keeps running; its child must die too.
    log = tmp_path / "log"
    script = tmp_path / "s.sh"
    script.write_text(f"#!/bin/sh\ntrap 'echo TERM >> {log}' TERM\nsleep 30 &\necho $! > {tmp_path}/child\n"
                      "while :; do sleep 0.05; done\n")
    script.chmod(0o755)
    t0 = time.monotonic()
    res = await run_bounded((str(script),), 0.5, grace=0.5)
    took = time.monotonic() - t0
    assert res.timed_out and took >= 0.5
    assert "TERM" in log.read_text()  # SIGTERM first
    child = int((tmp_path / "child").read_text())
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the script's child survived")


async def test_run_lifecycle_from_config(tmp_path):
    mark = tmp_path / "up"
    c = conf(f'startup_script "/bin/sh -c \'echo started > {mark}\'"').config
    res = await run_lifecycle("startup", c)
    assert res.ok and mark.read_text().strip() == "started"
    assert await run_lifecycle("shutdown", c) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root-owned paths to tell secure from insecure")
async def test_insecure_script_not_run_under_security(tmp_path):
    os.chmod(tmp_path, 0o777)
    script = tmp_path / "s.sh"
    script.write_text(f"#!/bin/sh\ntouch {tmp_path}/ran\n")
    script.chmod(0o755)
    c = conf(f"startup_script {script}\nenable_script_security").config
    res = await run_lifecycle("startup", c)
    assert res.error and "enable_script_security" in res.error and not (tmp_path / "ran").exists()
    assert sys.executable


async def test_a_program_that_cannot_start_is_an_error_not_an_exception(tmp_path):
    res = await run_bounded((str(tmp_path / "missing"),), 5)
    assert not res.ok and res.returncode is None
    assert res.error == f"cannot run {tmp_path / 'missing'}: No such file or directory"
    res = await run_bounded(("/bin/true",), 5, user="no-such-user-chimeha")
    assert not res.ok and res.error == "unknown user or group: getpwnam(): name not found: 'no-such-user-chimeha'"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
async def test_runs_as_the_user_without_roots_groups():
    import pwd
    import shutil
    import tempfile
    from pathlib import Path

    shared = tempfile.mkdtemp(prefix="chimeha-lc-")  # pytest's tmp_path is not reachable for nobody
    os.chmod(shared, 0o777)
    out = Path(shared) / "ids"
    try:
        res = await run_bounded(("/bin/sh", "-c", f"echo $(id -u) $(id -G) > {out}"), 5, user="nobody")
        assert res.ok, res.describe()
        uid, *groups = out.read_text().split()
    finally:
        shutil.rmtree(shared)
    nobody = pwd.getpwnam("nobody")
    assert int(uid) == nobody.pw_uid and groups == [str(nobody.pw_gid)]  # root's supplementary groups dropped
