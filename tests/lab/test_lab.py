"""The seed's verification lab, end to end, in namespaces.

keepalived on both servers proves the lab itself; chime-ha alone and the mixed
cluster prove chime-ha (they run as soon as `chime-ha run` exists); a wrong
auth_pass on one node must fail the right step with a message that says why.
"""

import json
import subprocess
import sys

import pytest

from chimeha.lab.cluster import chime_ha_available, seed_configs
from chimeha.lab.netns import list_own_namespaces
from chimeha.lab.runner import format_report, run_lab

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]

TAG = "tlab"  # never "lab": `chime-ha lab down` must not touch test runs


def _no_leftovers(report):
    assert not [n for n in list_own_namespaces() if n.startswith("chhatlab")], "namespaces left behind"


def _assert_all_pass(report):
    assert report.ok, format_report(report)
    by = {s.name: s for s in report.steps}
    # Every move-step measured a move and an outage; the service stop moved the VIP
    # (so there was something to measure) and the client saw it come back.
    for name in ("service-stop", "service-start", "link-cut", "link-restore"):
        assert by[name].vip_move_time is not None and by[name].vip_move_time > 0, name
        assert by[name].outage is not None, name
    # Cutting server1 off must cost the client some answers: the backup needs
    # Master_Down_Interval (about 3 s here) to notice.
    assert by["link-cut"].outage > 0.5
    assert by["link-cut"].vip_move_time > 2.0


@pytest.mark.keepalived
def test_lab_passes_with_keepalived_on_both_nodes():
    report, kept = run_lab("active-standby", {"server1": "keepalived", "server2": "keepalived"}, tag=TAG)
    assert kept is None
    _assert_all_pass(report)
    _no_leftovers(report)


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


def test_lab_passes_with_chime_ha_on_both_nodes():
    _need_chime_ha()
    report, _ = run_lab("active-standby", {"server1": "chime-ha", "server2": "chime-ha"}, tag=TAG)
    _assert_all_pass(report)
    _no_leftovers(report)


@pytest.mark.keepalived
def test_lab_passes_with_a_mixed_cluster():
    _need_chime_ha()
    report, _ = run_lab("active-standby", {"server1": "chime-ha", "server2": "keepalived"}, tag=TAG)
    _assert_all_pass(report)
    _no_leftovers(report)


def test_cli_json_is_one_object_and_exit_status_follows_it():
    """`chime-ha lab --json`: progress on stderr, one JSON object on stdout."""
    daemon = "chime-ha" if chime_ha_available() is None else "keepalived"
    proc = subprocess.run([sys.executable, "-c", "import sys; from chimeha.cli import main; sys.exit(main())", "lab", "--daemon", daemon, "--json"],
                          capture_output=True, text=True, timeout=170)
    out = json.loads(proc.stdout)
    assert isinstance(out, dict) and len(out["steps"]) == 6
    assert proc.returncode == (0 if out["ok"] else 1)
    assert "[1/6]" in proc.stderr  # progress while it ran
    assert out["ok"], proc.stderr[-2000:]
