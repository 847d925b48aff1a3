"""The seed's verification lab, end to end, in namespaces.

keepalived on both servers proves the lab itself; chime-ha alone and the mixed
cluster prove chime-ha (they run as soon as `chime-ha run` exists); a wrong
auth_pass on one node must fail the right step with a message that says why.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from chimeha.lab.cluster import CONF_PATH, chime_ha_available, seed_configs, seed_dir
from chimeha.lab.netns import list_own_namespaces
from chimeha.lab.runner import format_report, run_lab

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]

TAG = "tlab"  # never "lab": `chime-ha lab down` must not touch test runs


def _no_leftovers(report):
    if report.logdir:  # kept because the run failed (as some of these tests intend)
        shutil.rmtree(report.logdir, ignore_errors=True)
    # Only this run's namespaces: other test runs may be going on at the same time.
    assert report.prefix.startswith("chhatlab")
    assert not [n for n in list_own_namespaces() if n.startswith(report.prefix)], "namespaces left behind"


def _tag(first):
    """A tag of our own (no hex digits after the first letter: it cannot match a random prefix)."""
    return first + "".join(random.choice("ghijklmnopqrstuvwxyz") for _ in range(3))


def _assert_all_pass(report):
    assert report.ok, format_report(report) if hasattr(report, "as_dict") else report
    by = {s.name: s for s in report.steps}
    # Every move-step measured a move and an outage; the service stop moved the VIP
    # (so there was something to measure) and the client saw it come back.
    for name in ("service-stop", "service-start", "link-cut", "link-restore"):
        assert by[name].vip_move_time is not None and by[name].vip_move_time > 0, name
        assert by[name].outage is not None, name
    # Cutting server1 off must cost the client some answers: the backup needs
    # Master_Down_Interval (about 3 s here) to notice.
    assert by["link-cut"].outage > 0.5
    assert by["link-cut"].vip_move_time > 1.5


@pytest.mark.keepalived
def test_wrong_auth_pass_fails_the_first_step_and_says_why():
    cfg = seed_configs("active-standby")["server2"].replace("auth_pass 1111", "auth_pass 2222")
    report, _ = run_lab("active-standby", {"server1": "keepalived", "server2": "keepalived"},
                        configs={"server2": cfg}, tag=TAG)
    assert not report.ok
    assert len(report.steps) == 1
    step = report.steps[0]
    assert step.name == "vips-on-server1" and not step.ok
    assert "split brain" in step.message
    assert "auth_pass differs" in step.message and "'2222'" in step.message
    assert "invalid passwd" in step.message  # the daemon's own complaint is quoted
    _no_leftovers(report)


def test_missing_daemon_binary_is_a_failed_report_not_a_traceback(monkeypatch):
    monkeypatch.setattr("chimeha.lab.cluster.daemon_argv", lambda kind: ["/nonexistent/chime-ha-daemon"])
    report, _ = run_lab("active-standby", {"server1": "keepalived", "server2": "keepalived"}, tag=TAG)
    assert not report.ok
    assert report.steps and "exited with status" in report.steps[0].message
    _no_leftovers(report)


def _need_chime_ha():
    why = chime_ha_available()
    if why:
        pytest.skip(why)


def test_lab_passes_with_chime_ha_on_both_nodes(chime_ha_lab_report):
    report = chime_ha_lab_report  # one run per session, shared with test_lab_vs_simulate.py
    _assert_all_pass(report)
    assert not [n for n in list_own_namespaces() if n.startswith(report.prefix)], "namespaces left behind"
    # The text report puts the simulator's window next to each measured move.
    text = format_report(report)
    for name in ("service-stop", "service-start", "link-cut", "link-restore"):
        line = next(ln for ln in text.splitlines() if f"PASS  {name}" in ln)
        pred = next(s.predicted for s in report.steps if s.name == name)
        assert "simulate" in line and f"{pred['min']:.2f}" in line and f"{pred['max']:.2f} s" in line, line


@pytest.mark.keepalived
def test_lab_passes_with_a_mixed_cluster():
    _need_chime_ha()
    installed = {}

    def grab(cluster):
        for name, node in cluster.nodes.items():
            installed[name] = node.read_file(CONF_PATH)

    report, _ = run_lab("active-standby", {"server1": "chime-ha", "server2": "keepalived"}, tag=TAG,
                        on_built=grab)
    # The seed's files, byte for byte, at the path the document uses, one per node.
    d = seed_dir()
    assert installed == {n: (d / f"active-standby-{n}.conf").read_text(encoding="utf-8")
                         for n in ("server1", "server2")}
    _assert_all_pass(report)
    _no_leftovers(report)


def test_active_active_lab_passes_with_chime_ha():
    """Needs chime-ha's virtual servers: keepalived cannot run it here (no ip_vs)."""
    _need_chime_ha()
    report, _ = run_lab("active-active", {"server1": "chime-ha", "server2": "chime-ha"}, tag=TAG)
    assert report.ok, format_report(report)
    by = {s.name: s for s in report.steps}
    # No track_script in the active-active seed: the VIPs stay, the API is served by server2.
    assert by["service-stop"].vip_move_time is None
    assert by["link-cut"].vip_move_time is not None
    assert any("ip_forward" in n for n in report.notes)
    _no_leftovers(report)


_CLI = [sys.executable, "-c", "import sys; from chimeha.cli import main; sys.exit(main())"]


def _ns_with(prefix):
    return [n for n in list_own_namespaces() if n.startswith(prefix)]


@pytest.mark.keepalived
def test_ctrl_c_tears_everything_down():
    tag = _tag("i")
    proc = subprocess.Popen([*_CLI, "lab", "--daemon", "keepalived", "--tag", tag],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("[2/6]"):
                break
        assert _ns_with("chha" + tag), "the lab should be up by step 2"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest and "Traceback" not in rest
    for line in rest.splitlines():
        if "daemon logs kept in" in line:
            shutil.rmtree(line.split("daemon logs kept in", 1)[1].strip(), ignore_errors=True)
    assert _ns_with("chha" + tag) == []


@pytest.mark.keepalived
def test_keepalived_lab_via_the_cli_json_passes_and_keep_then_down_removes_only_it(topology):
    """keepalived on both proves the lab itself. One CLI run (a lab run costs ~20 s) checks `--json`
    (progress on stderr, one JSON object on stdout), `--keep` and `lab down`."""
    bystander = topology.add_host("other", "192.168.231.99/24")
    tag = _tag("k")
    proc = subprocess.run([*_CLI, "lab", "--daemon", "keepalived", "--keep", "--json", "--tag", tag],
                          capture_output=True, text=True, timeout=170)
    try:
        out = json.loads(proc.stdout)
        assert isinstance(out, dict) and len(out["steps"]) == 6
        assert "[1/6]" in proc.stderr  # progress while it ran
        assert out["ok"], proc.stderr[-3000:]
        assert proc.returncode == 0
        assert out["daemons"] == {"server1": "keepalived", "server2": "keepalived"}
        _assert_all_pass(SimpleNamespace(ok=out["ok"], steps=[SimpleNamespace(**s) for s in out["steps"]]))
        # Per step, the simulator's window next to the measured move.
        for s in out["steps"][2:]:
            p = s["predicted"]
            assert p["event"].startswith("server1 ") and 0 < p["min"] <= p["max"] and \
                isinstance(p["inside"], bool), s
        assert out["steps"][0]["predicted"] is None  # no action, nothing to predict
        assert out["tolerance"] == [0.05, 0.25]
        kept = out["kept"]
        assert out["prefix"] and kept["prefix"] == out["prefix"]
        assert set(kept["enter"]) == {"server1", "server2", "client"}
        # The kept lab still works: the VIP is on server1, seen from inside the node.
        pid = kept["enter"]["server1"].split()[2]
        deadline = time.monotonic() + 10
        while True:
            ip = subprocess.run(["nsenter", "-t", pid, "-p", "-m", "-n", "--", "ip", "-br", "a"],
                                capture_output=True, text=True).stdout
            if "192.168.231.10/32" in ip or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "192.168.231.10/32" in ip
        assert sorted(_ns_with("chha" + tag)) == sorted(kept["namespaces"])
    finally:
        down = subprocess.run([*_CLI, "lab", "down", "--json", "--tag", tag],
                              capture_output=True, text=True, timeout=60)
    assert sorted(json.loads(down.stdout)["removed"]) == sorted(kept["namespaces"])
    assert _ns_with("chha" + tag) == []
    assert kept["logdir"] and not os.path.exists(kept["logdir"])  # the kept lab's daemon logs too
    assert bystander.netns in list_own_namespaces()  # someone else's namespace survives


@pytest.mark.keepalived
@pytest.mark.parametrize("flags", [["--peer", "keepalived"], ["--daemon", "keepalived", "--json"]])
def test_active_active_with_keepalived_is_refused_before_starting_with_keepalived_words(flags, capsys):
    """keepalived cannot run the active-active seed here: say why at once (exit 2), build nothing."""
    from chimeha.cli import main
    from chimeha.lab.preflight import ip_vs_available

    tag = _tag("a")
    rc = main(["lab", "active-active", *flags, "--tag", tag])
    cap = capsys.readouterr()
    assert rc == 2
    msg = json.loads(cap.out)["error"] if "--json" in flags else cap.err
    assert "keepalived cannot run the active-active seed" in msg
    # keepalived's own words about the seed's bare `weight`, with file and line
    assert "Configuration line starting `weight` is missing a parameter" in msg
    assert "active-active-server2.conf: Line 25" in msg
    assert ("server1: `keepalived -t`" in msg) == ("--daemon" in flags)  # only the servers keepalived runs on
    if not ip_vs_available():
        assert "no ip_vs (LVS) module" in msg
    assert "chime-ha lab active-active" in msg  # what to do instead
    assert "Traceback" not in cap.err
    assert _ns_with("chha" + tag) == []  # nothing was built


@pytest.mark.keepalived
def test_active_active_keepalived_run_fails_step_one_quoting_keepalived():
    """Through the Python API (no preflight) the run fails fast and quotes keepalived's own log line."""
    report, _ = run_lab("active-active", {"server1": "keepalived", "server2": "keepalived"}, tag=TAG)
    assert not report.ok and len(report.steps) == 1
    msg = report.steps[0].message
    assert "keepalived on server" in msg and "exited with status" in msg
    assert "`weight` is missing a parameter" in msg
    _no_leftovers(report)
