"""chime-ha with keepalived's command line: exit codes measured against the real keepalived."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chimeha.cli import keepalived_compat as kc
from chimeha.config import load

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "config" / "corpus"
SEEDS = sorted((ROOT / "examples" / "seed").glob("*.conf"))
CONFIG_ID = "chimeha-test"
CHIME = str(Path(sys.executable).with_name("chime-ha"))
sys.path.insert(0, str(ROOT / "tests" / "config"))
from keepalived_util import keepalived_test, prepare_host  # noqa: E402


def _differs(path: Path) -> bool:
    return bool(re.search(r"^#\s*keepalived:\s*differs", path.read_text(), re.M))


def _ours(host, *args: str) -> subprocess.CompletedProcess:
    return host.run([CHIME, "keepalived", *args], check=False, timeout=60)


#: Runs ``chime-ha keepalived -t`` for many files in ONE interpreter inside the
#: namespace: the same code path as the command (chimeha.cli.main) without ~100
#: interpreter start-ups; the command itself is run by the checks below.
_BATCH = """
import contextlib, io, json, sys
from chimeha.cli import main
out = []
for path in sys.argv[2:]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["keepalived", "-t", "-l", "-n", "-i", sys.argv[1], "-f", path])
    out.append([rc, err.getvalue()])
print(json.dumps(out))
"""


def _ours_batch(host, paths: list[Path]) -> list[tuple[int, str]]:
    proc = host.run([sys.executable, "-c", _BATCH, CONFIG_ID, *map(str, paths)], timeout=300)
    return [(rc, err) for rc, err in json.loads(proc.stdout)]


@pytest.mark.system
@pytest.mark.keepalived
def test_config_test_exit_codes_match_keepalived(topology, tmp_path):
    host = prepare_host(topology)
    files = sorted(CORPUS.glob("*.conf")) + SEEDS
    with ThreadPoolExecutor(4) as pool:  # keepalived -t, one process per file, several at once
        theirs = list(pool.map(lambda p: keepalived_test(host, p, CONFIG_ID), files))
    ours_all = _ours_batch(host, files)
    compared, mismatches, by_code = 0, [], {}
    for path, (rc, out), (our_rc, our_err) in zip(files, theirs, ours_all, strict=True):
        if rc < 0:  # keepalived crashed (http-get-no-url: SIGSEGV); nothing to match
            assert our_rc == kc.EXIT_CONFIG_TEST, (path.name, our_err)
            continue
        if _differs(path):  # documented differences: chime-ha's own verdict, in keepalived's codes
            expect = kc.test_status(load(str(path), config_id=CONFIG_ID).diagnostics)
            assert our_rc == expect, (path.name, our_rc, expect)
            continue
        compared += 1
        by_code[rc] = by_code.get(rc, 0) + 1
        if our_rc != rc:
            mismatches.append((path.name, rc, our_rc, out[-300:], our_err[-300:]))
    assert not mismatches, mismatches
    assert compared >= 90 and {0, 2, 5, 6} <= set(by_code), by_code
    # a missing file: keepalived -t says so and exits 0; with -e (all-config) 4
    for extra in ([], ["-e"]):
        cmd = ["keepalived", "-t", "-l", "-n", *extra, "-f", "/nonexistent/keepalived.conf"]
        theirs = host.run(cmd, check=False, timeout=30)
        ours = _ours(host, "-t", "-l", "-n", *extra, "-f", "/nonexistent/keepalived.conf")
        assert ours.returncode == theirs.returncode, (extra, theirs.returncode, ours.returncode)
        assert "Config files missing '/nonexistent/keepalived.conf'." in theirs.stdout + theirs.stderr
        assert "Config files missing '/nonexistent/keepalived.conf'." in ours.stderr
    # -t LOG_FILE: the report goes to the file
    log = tmp_path / "test.log"
    ours = _ours(host, f"--config-test={log}", "-f", str(CORPUS / "unknown-keyword.conf"))
    assert ours.returncode == 5 and "[unknown-keyword]" in log.read_text() and ours.stderr == ""


@pytest.mark.keepalived
@pytest.mark.parametrize("argv", [["--bogus"], ["-f"], ["--signum=BOGUS"], ["-S"]])
def test_bad_command_lines_exit_like_keepalived(argv):
    theirs = subprocess.run(["keepalived", *argv], capture_output=True, text=True, timeout=30)
    ours = subprocess.run([CHIME, "keepalived", *argv], capture_output=True, text=True, timeout=30)
    assert theirs.returncode == ours.returncode == 1, (theirs.returncode, ours.returncode)


@pytest.mark.keepalived
def test_signum_and_version_answer_like_keepalived():
    for name in ("STOP", "RELOAD", "DATA", "STATS", "STATS_CLEAR", "JSON"):
        theirs = subprocess.run(["keepalived", f"--signum={name}"], capture_output=True, text=True, timeout=30)
        ours = subprocess.run([CHIME, "keepalived", f"--signum={name}"], capture_output=True, text=True, timeout=30)
        assert ours.returncode == 0 and ours.stdout.strip() == theirs.stdout.strip(), name
    theirs = subprocess.run(["keepalived", "-v"], capture_output=True, text=True, timeout=30)
    ours = subprocess.run([CHIME, "keepalived", "--version"], capture_output=True, text=True, timeout=30)
    version = re.compile(r"^Keepalived v(\d+\.\d+\.\d+)")
    assert ours.returncode == theirs.returncode == 0
    assert version.match(ours.stderr).group(1) == version.match(theirs.stderr).group(1)
    assert "chime-ha" in ours.stderr


def test_invoked_as_keepalived_takes_keepalived_options(tmp_path):
    link = tmp_path / "keepalived"
    link.symlink_to(CHIME)
    seed = str(ROOT / "examples" / "seed" / "active-standby-server1.conf")
    proc = subprocess.run([str(link), "-t", "-f", seed], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 6 and "[script-security]" in proc.stderr  # keepalived's code for this file
    assert subprocess.run([str(link), "-x", "-t", "-f", "/nonexistent"], capture_output=True,
                          timeout=60).returncode == 0
    help_ = subprocess.run([str(link), "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "--dont-fork" in help_.stdout and "--config-test" in help_.stdout


def test_options_map_to_chime_ha_run():
    p = kc.build_parser()
    ns = p.parse_args(["-n", "-l", "-D", "-P", "-f", "/etc/x.conf", "-p", "/run/a.pid", "-r", "/run/b.pid"])
    assert kc.run_argv(ns, ["--metrics", "127.0.0.1:9650"]) == [
        "run", "-f", "/etc/x.conf", "--dataplane", "none", "--metrics", "127.0.0.1:9650"]
    assert ns.pid_file == "/run/a.pid" and ns.vrrp_pid_file == "/run/b.pid" and ns.dont_fork
    notes = kc.notes(p.parse_args(["-x", "-D", "-V"]))
    assert any("-x" in n and "not-implemented" in n for n in notes)
    assert any("-V" in n and "not-implemented" in n for n in notes)
    assert any("log-detail" in n and "no-effect" in n for n in notes)
    assert kc.notes(p.parse_args(["-n", "-l", "-f", "x"])) == []
    # every option of keepalived's --help is accepted
    for opt in ("-B", "--all", "-G", "-X", "-I", "-R", "-d", "-a", "-m", "-e", "--vrrp", "--check",
                "--log-facility=local3", "--umask=022", "--namespace=x", "--snmp-agent-socket=/x",
                "--bfd_pid=/x", "--checkers_pid=/x", "--vrrp_pid=/x", "--pid=/x", "--config-id=x",
                "--core-dump-pattern=core"):
        p.parse_args([opt])
    assert kc._syslog_facility("3") == kc._syslog_facility("local3")
    with pytest.raises(ValueError):
        kc._syslog_facility("kern")


# Not a timing test: VRRPv3 at 0.5 s, so each start takes the VIP after ~1.7 s alone (v2 1 s: ~3.4 s).
CONF = """\
global_defs {
    router_id compat1
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 61
    priority 150
    version 3
    advert_int 0.5
    virtual_ipaddress {
        192.168.231.60/24
    }
}
"""


def _wait(cond, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    return cond()


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@pytest.mark.system
def test_daemon_with_keepalived_options_forks_writes_pid_files_and_stops(topology, tmp_path):
    host = topology.add_host("kc", "192.168.231.61/24")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF)
    main_pid, vrrp_pid = tmp_path / "keepalived.pid", tmp_path / "vrrp.pid"
    extra = ["--", "--control", str(tmp_path / "ctl.sock"), "--dump-dir", str(tmp_path)]
    # 1. like a sysvinit script: no -n, the command returns at once and the daemon runs detached
    started = host.run([CHIME, "keepalived", "-D", "-f", str(conf), "-p", str(main_pid), "-r", str(vrrp_pid),
                        *extra], check=False, timeout=30)
    assert started.returncode == 0, started.stderr
    pid = _wait(lambda: _pid_in(main_pid))
    assert pid and _pid_in(vrrp_pid) == pid
    assert _wait(lambda: "192.168.231.60" in host.addresses_on()), "the detached daemon never took the VIP"
    os.kill(pid, signal.SIGTERM)
    assert _wait(lambda: not main_pid.exists() and not vrrp_pid.exists()), "PID files left behind"
    assert _wait(lambda: "192.168.231.60" not in host.addresses_on())
    # 2. like keepalived.service: --dont-fork, stays in the foreground, SIGTERM ends it with 0
    proc = host.popen([CHIME, "keepalived", "--dont-fork", "-l", "-f", str(conf), "-p", str(main_pid), *extra],
                      stderr=subprocess.PIPE, text=True)
    assert _wait(lambda: "192.168.231.60" in host.addresses_on())
    fg = _pid_in(main_pid)
    assert fg is not None and fg != pid
    os.kill(fg, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert not main_pid.exists()
    assert "chime-ha[" in proc.stderr.read()  # -l: the log is on the console


def test_keepalived_named_unit_runs_the_compat_command():
    unit = (ROOT / "packaging" / "systemd" / "keepalived.service").read_text()
    start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()
    assert start[:3] == ["/usr/bin/chime-ha", "keepalived", "--dont-fork"] and "$DAEMON_ARGS" in start
    assert "EnvironmentFile=-/etc/default/keepalived" in unit and "Type=notify" in unit
    ns = kc.build_parser().parse_args(start[2:3])
    assert ns.dont_fork
    if shutil.which("systemd-analyze"):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            copy = Path(d) / "keepalived.service"
            copy.write_text(unit.replace("/usr/bin/chime-ha", CHIME))
            proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
