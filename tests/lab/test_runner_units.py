"""Pure parts of the lab runner and CLI: no namespaces needed."""

import json

import pytest

from chimeha.cli import main
from chimeha.lab import cluster
from chimeha.lab.runner import LabReport, StepResult, format_report, format_step, peer_mismatches, steps_for


def test_seed_configs_are_the_files_byte_for_byte():
    cfgs = cluster.seed_configs("active-standby")
    d = cluster.seed_dir()
    assert cfgs["server1"] == (d / "active-standby-server1.conf").read_text(encoding="utf-8")
    assert cfgs["server2"] == (d / "active-standby-server2.conf").read_text(encoding="utf-8")
    assert "priority 255" in cfgs["server1"] and "priority 254" in cfgs["server2"]


def test_seed_peers_agree_and_a_wrong_password_is_named():
    cfgs = cluster.seed_configs("active-standby")
    assert peer_mismatches(cfgs) == []
    cfgs["server2"] = cfgs["server2"].replace("auth_pass 1111", "auth_pass 2222")
    (msg,) = peer_mismatches(cfgs)
    assert "auth_pass" in msg and "'1111'" in msg and "'2222'" in msg


def test_missing_keyword_on_one_side_is_a_mismatch():
    cfgs = cluster.seed_configs("active-standby")
    cfgs["server1"] = cfgs["server1"].replace("advert_int 1", "advert_int 0.1").replace(
        "vrrp_script", "global_defs {\n  vrrp_version 3\n}\nvrrp_script", 1)
    found = " ".join(peer_mismatches(cfgs))
    assert "advert_int" in found and "vrrp_version" in found and "server2 unset" in found


def test_steps_cover_the_documents_verification():
    names = [s.name for s in steps_for("active-standby")]
    assert names == ["vips-on-server1", "answers-via-vips", "service-stop", "service-start", "link-cut",
                     "link-restore"]
    stop = steps_for("active-standby")[2]
    assert stop.vips_on == "server2" and stop.answer_from == {"Web UI": "server2", "API": "server2"}
    # Active-active has no track_script: stopping the service must not move the VIPs.
    aa_stop = steps_for("active-active")[2]
    assert aa_stop.vips_on == "server1" and aa_stop.answer_from["API"] == "server2"


def test_endpoints_follow_the_document():
    assert ("Web UI", "192.168.231.10", 8033) in cluster.ENDPOINTS["active-standby"]
    assert ("Web UI", "192.168.231.20", 80) in cluster.ENDPOINTS["active-active"]


def test_unknown_daemon_or_mode_is_refused():
    with pytest.raises(ValueError, match="unknown daemon"):
        cluster.daemon_argv("heartbeat")
    with pytest.raises(ValueError, match="unknown lab mode"):
        cluster.SeedCluster(mode="triple")


def _report(ok_steps: int, fail: bool) -> LabReport:
    steps = [StepResult(i + 1, s.name, s.title, True, "fine", 1.0 if i > 1 else None, 0.5 if i > 1 else None)
             for i, s in enumerate(steps_for("active-standby")[:ok_steps])]
    if fail:
        s = steps_for("active-standby")[ok_steps]
        steps.append(StepResult(ok_steps + 1, s.name, s.title, False, "split brain: because"))
    return LabReport("active-standby", {"server1": "keepalived", "server2": "chime-ha"}, steps, 12.0, "/tmp/x")


def test_report_ok_only_when_every_step_passed():
    assert _report(6, False).ok
    assert not _report(2, True).ok
    assert not _report(3, False).ok  # steps that never ran did not pass
    interrupted = _report(6, False)
    interrupted.interrupted = True
    assert not interrupted.ok


def test_text_report_shows_verdicts_timings_and_skips():
    text = format_report(_report(2, True))
    assert "2/6 steps passed" in text
    assert "FAIL  service-stop" in text
    assert text.count("SKIP") == 3
    assert text.rstrip().endswith("RESULT: FAIL")
    line = format_step(_report(6, False).steps[3])
    assert "PASS" in line and "VIP move 1.00 s" in line and "client outage 0.50 s" in line


def test_json_report_is_one_object_with_ok():
    d = json.loads(json.dumps(_report(6, False).as_dict()))
    assert d["ok"] is True and len(d["steps"]) == 6 and d["steps"][2]["vip_move_time"] == 1.0


def test_cli_rejects_bad_arguments_without_traceback(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["lab", "active-passive"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "Traceback" not in err


def test_cli_needs_root(monkeypatch, capsys):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["lab", "--daemon", "keepalived"]) == 2
    assert "needs root" in capsys.readouterr().err
    assert main(["lab", "--daemon", "keepalived", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and "root" in out["error"]


def test_reports_show_the_simulated_window_next_to_the_move():
    rep = _report(6, False)
    rep.tolerance = (0.05, 0.25)
    rep.steps[2].predicted = {"event": "server1 check-fail chk_server", "min": 0.008, "max": 2.008, "phases": 20,
                              "moved_in": 20, "inside": True}
    rep.steps[4].predicted = {"event": "server1 link-down", "min": 2.008, "max": 3.008, "phases": 20,
                              "moved_in": 20, "inside": False}
    assert "simulate 0.01..2.01 s" in format_step(rep.steps[2]) and "OUTSIDE" not in format_step(rep.steps[2])
    assert "simulate 2.01..3.01 s (OUTSIDE)" in format_step(rep.steps[4])
    lines = format_report(rep).splitlines()
    stop = next(ln for ln in lines if "service-stop" in ln)
    cut = next(ln for ln in lines if "link-cut" in ln)
    assert "simulate" in stop and "0.01..2.01 s" in stop and "OUTSIDE" not in stop
    assert cut.rstrip().endswith("OUTSIDE")
    assert any("250 ms late" in ln for ln in lines)  # the legend states the tolerance
    d = json.loads(json.dumps(rep.as_dict()))
    assert d["steps"][2]["predicted"]["max"] == 2.008 and d["steps"][2]["vip_move_time"] == 1.0
    assert d["steps"][0]["predicted"] is None


def test_ip_vs_detection(tmp_path):
    import os

    from chimeha.lab.preflight import ip_vs_available

    proc, mods = tmp_path / "proc", tmp_path / "modules"
    (proc / "net").mkdir(parents=True)
    assert not ip_vs_available(str(proc), str(mods))
    moddir = mods / os.uname().release
    (moddir / "kernel" / "net" / "netfilter" / "ipvs").mkdir(parents=True)
    (moddir / "modules.builtin").write_text("kernel/net/bridge/bridge.ko\n")
    assert not ip_vs_available(str(proc), str(mods))
    (moddir / "kernel" / "net" / "netfilter" / "ipvs" / "ip_vs.ko.xz").write_bytes(b"")
    assert ip_vs_available(str(proc), str(mods))  # loadable
    (proc / "net" / "ip_vs").write_text("")
    assert ip_vs_available(str(proc), str(tmp_path / "none"))  # loaded


@pytest.mark.keepalived
def test_keepalived_can_run_the_active_standby_seed_but_not_the_active_active_one():
    from chimeha.lab.preflight import keepalived_blockers

    assert keepalived_blockers("active-standby", {"server1": "keepalived", "server2": "keepalived"}) == []
    assert keepalived_blockers("active-active", {"server1": "chime-ha", "server2": "chime-ha"}) == []
    found = keepalived_blockers("active-active", {"server1": "chime-ha", "server2": "keepalived"})
    assert found and all(b.startswith("server2") for b in found)
    assert "missing a parameter" in found[0]
