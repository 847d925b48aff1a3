import json
import threading

import pytest

from chimeha.cli import build_parser, main

from observe_fakes import Event


def control_of(running):
    threaded, _ = running
    return threaded.observer.control.path


def test_status_text_shows_every_field(running_observer, capsys):
    assert main(["status", "--control", control_of(running_observer)]) == 0
    out = capsys.readouterr().out
    assert "VRRP instance VI_1: MASTER  (VRID 51 on ens160, VRRPv2)" in out
    assert "priority     90 effective (base 100)" in out
    assert "master       192.168.231.11 (this node)" in out
    assert "VIPs         192.168.231.10/32 (held here)" in out
    assert "adverts      sent 812, received 3 (priority 0: sent 0, received 1)" in out
    assert "dropped      advert-interval 5, auth 4, checksum 2, length 6, ttl 1" in out
    assert "BACKUP -> MASTER at " in out and ": higher priority 255 than master 192.168.231.12 (254)" in out
    assert "failovers    1 measured, last 0.992 s" in out
    assert "chk_server       ok       (exit 0)" in out
    assert "192.168.231.10:8801/TCP  rr/NAT  data plane nft  active here" in out
    assert "192.168.231.12:8801      DOWN  weight 0" in out and "refused" in out
    assert "VRRP packets matching no instance: vrid-unknown 7" in out


def test_status_json_and_instance_filter(running_observer, capsys):
    path = control_of(running_observer)
    assert main(["status", "--control", path, "--json", "--instance", "VI_2"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert list(snap["instances"]) == ["VI_2"] and snap["instances"]["VI_2"]["state"] == "BACKUP"
    assert main(["status", "--control", path, "--instance", "VI_9"]) == 1
    assert "no VRRP instance 'VI_9' (instances: VI_1, VI_2)" in capsys.readouterr().err


def test_split_brain_shows_in_status(running_observer, capsys):
    threaded, daemon = running_observer
    daemon.snap["instances"]["VI_1"]["split_brain"] = {"active": True, "peer": "192.168.231.12", "since": 1.8e9}
    assert main(["status", "--control", control_of(running_observer)]) == 0
    out = capsys.readouterr().out
    assert "VRRP instance VI_1: SPLIT BRAIN" in out and "another master 192.168.231.12 since" in out


def test_status_dump_writes_files(running_observer, capsys, tmp_path):
    assert main(["status", "--control", control_of(running_observer), "--dump", "all"]) == 0
    paths = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[1] for p in paths] == ["k.data", "k.stats", "k.json"]
    assert open(paths[1]).read().startswith("VRRP Instance: VI_1\n")


def test_journal_text_json_and_file(running_observer, capsys, tmp_path):
    threaded, _ = running_observer
    threaded.call(threaded.observer.on_transition, Event("VI_1", "BACKUP", "MASTER", "no advertisement from 192.168.231.12 for 3.008 s", None))
    threaded.call(threaded.observer.on_transition, Event("VI_2", "INIT", "BACKUP", "startup", None))
    path = control_of(running_observer)
    assert main(["journal", "--control", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].endswith("VI_1  BACKUP -> MASTER: no advertisement from 192.168.231.12 for 3.008 s")
    assert main(["journal", "--control", path, "--json", "--instance", "VI_2"]) == 0
    assert [json.loads(x)["reason"] for x in capsys.readouterr().out.splitlines()] == ["startup"]
    assert main(["journal", "--file", str(tmp_path / "journal.jsonl"), "-n", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("VI_2  INIT -> BACKUP: startup")


def test_journal_follow_prints_new_entries(running_observer, capsys, monkeypatch):
    threaded, _ = running_observer
    path = control_of(running_observer)
    printed = []

    # Stop following after the first new entry: the CLI's print is where it surfaces.
    def fake_emit(entry, as_json):
        printed.append(entry)
        raise KeyboardInterrupt
    import chimeha.cli.journal as journal_cli
    monkeypatch.setattr(journal_cli, "_emit", fake_emit)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("rc", _run_main(["journal", "--control", path, "-n", "0", "-f"])))
    t.start()
    for _ in range(500):
        if threaded.observer.journal.subscribers >= 2:
            break
        threading.Event().wait(0.01)
    threaded.call(threaded.observer.on_transition, Event("VI_1", "MASTER", "FAULT", "interface ens160 is down", None))
    t.join(20)
    assert printed and printed[0]["to"] == "FAULT" and result["rc"] == 130


def _run_main(argv):
    try:
        return main(argv)
    except KeyboardInterrupt:
        return 130


def test_reload_ok_and_refused(running_observer, capsys):
    threaded, daemon = running_observer
    path = control_of(running_observer)
    assert main(["reload", "--control", path]) == 0
    assert "chime-ha reload: reloaded: 2 kept" in capsys.readouterr().out
    daemon.reload_result = {"ok": False, "message": "invalid configuration; still running the old one",
                            "diagnostics": ["/etc/keepalived/keepalived.conf:12: error: 'weight' is missing a number [E3]"]}
    assert main(["reload", "--control", path]) == 1
    err = capsys.readouterr().err
    assert "keepalived.conf:12: error: 'weight' is missing a number" in err
    assert "invalid configuration; still running the old one" in err
    assert daemon.reloads == 2


@pytest.mark.parametrize("argv", [["status"], ["journal"], ["reload"], ["journal", "-f"]])
def test_no_daemon_is_one_clear_line(argv, tmp_path, capsys):
    assert main([*argv, "--control", str(tmp_path / "none.sock")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "chime-ha is not running: no control socket at" in err


@pytest.mark.parametrize("argv,words", [
    (["journal", "-n", "-4"], "-4 is negative"), (["journal", "-n", "lots"], "'lots' is not a whole number"),
    (["status", "--dump", "everything"], "invalid choice: 'everything'"),
    (["run", "--control-max-connections", "0"], "0 is less than 1"),
    (["run", "--control-max-connections", "9x"], "'9x' is not a whole number")])
def test_bad_arguments_exit_2_with_a_message(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and words in capsys.readouterr().err


def test_bad_reload_timeout_and_follow_with_file(tmp_path, capsys):
    assert main(["reload", "--timeout", "inf"]) == 2
    assert "--timeout must be between" in capsys.readouterr().err
    assert main(["journal", "--file", str(tmp_path / "j"), "-f"]) == 2


@pytest.mark.parametrize("command", ["status", "journal", "reload"])
def test_help_is_man_page_quality(command):
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    text = " ".join(sub.format_help().split())  # independent of the terminal width
    assert "examples:" in text and "exit status:" in text and f"chime-ha {command}" in text
    assert "--control PATH" in text
    assert "/run/chime-ha/control.sock" in "".join(text.split())  # argparse may wrap at the hyphen
    assert len(sub.description.split()) > 30  # a description, not a one-liner
