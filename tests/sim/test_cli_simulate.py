"""`chime-ha simulate` on the seed's unmodified active-standby configs."""

import json
import os
import subprocess
import sys

import pytest

from chimeha.cli import main
from chimeha.sim.scenario import format_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = os.path.join(ROOT, "examples", "seed")
S1 = os.path.join(SEED, "active-standby-server1.conf")
S2 = os.path.join(SEED, "active-standby-server2.conf")


def sim(capsys, *extra):
    rc = main(["simulate", "-f", S1, "-f", S2, *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_seed_service_stop_and_start_timeline_json(capsys):
    rc, out, err = sim(capsys, "--json", "--address", "server1=192.168.231.11", "--address",
                       "server2=192.168.231.12", "--event", "10.5 server1 check-fail chk_server",
                       "--event", "20.5 server1 check-ok chk_server")
    assert rc == 0, err
    res = json.loads(out)
    assert [n["name"] for n in res["nodes"]] == ["server1", "server2"]  # common prefix stripped
    moves = [(m["at"], m["from"], m["to"], m["delay"]) for m in res["vip_moves"]]
    # chk_server runs every 2 s from 0: failure seen at 12, server2 waits 2/256 s;
    # recovery seen at 22, server1 (BACKUP again) preempts after 3 + 1/256 s.
    assert moves == [(0.0, None, "server1", 0.0),
                     (pytest.approx(12.0078125), "server1", "server2", pytest.approx(1.5078125)),
                     (pytest.approx(25.00390625), "server2", "server1", pytest.approx(4.50390625))]
    assert res["warnings"] == []
    reasons = [r["reason"] for r in res["timeline"] if r["kind"] == "state" and r["node"] == "server2"]
    assert "received priority 0 from 192.168.231.11" in reasons
    assert res["final"] == {"VI_1": {"server1": "MASTER", "server2": "BACKUP"}}


def test_seed_link_cut_text_output(capsys):
    rc, out, err = sim(capsys, "--event", "5.5 server1 link-down", "--event", "15 server1 link-up")
    assert rc == 0, err
    assert "master down interval 3.008 s" in out
    assert "no advertisement from 192.0.2.1 for 3.008 s" in out
    assert "192.168.231.10: server1 -> server2  (2.508 s after 5.5 server1 link-down)" in out
    assert "192.168.231.10: server2 -> server1  (3.004 s after 15 server1 link-up)" in out


def test_named_nodes_and_stop(capsys):
    rc = main(["simulate", "-f", f"a={S1}", "-f", f"b={S2}", "--event", "4.25 a stop", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert res["vip_moves"][-1]["to"] == "b" and res["vip_moves"][-1]["delay"] == pytest.approx(2 / 256, abs=1e-6)
    assert res["final"]["VI_1"] == {"a": "STOPPED", "b": "MASTER"}


def test_equal_priority_configs_are_flagged(capsys, tmp_path):
    text = open(S2).read()
    (tmp_path / "x.conf").write_text(text)
    (tmp_path / "y.conf").write_text(text)
    rc = main(["simulate", "-f", str(tmp_path / "x.conf"), "-f", str(tmp_path / "y.conf")])
    out = capsys.readouterr().out
    assert rc == 0 and "equal priority 254 on x, y" in out


@pytest.mark.parametrize("args,msg", [
    (["--event", "1 nobody stop"], "unknown node 'nobody'"),
    (["--event", "soon server1 stop"], "time 'soon' is not a number"),
    (["--address", "server9=10.0.0.1"], "unknown node(s) server9"),
    (["--address", "server1"], "expected NAME=IP"),
    (["--latency", "-1"], "must be >= 0"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, args, msg):
    rc, out, err = sim(capsys, *args)
    assert rc == 2 and msg in err and "Traceback" not in err


def test_bad_config_reports_file_and_line(capsys, tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("vrrp_instance VI_1 {\n  virtual_router_id 999\n  priority 100\n}\n")
    rc = main(["simulate", "-f", str(bad), "-f", S2])
    err = capsys.readouterr().err
    assert rc == 2 and f"{bad}:" in err and "configuration has errors" in err


def test_console_entry_point_runs_without_root():
    exe = os.path.join(os.path.dirname(sys.executable), "chime-ha")
    proc = subprocess.run([exe, "simulate", "-f", S1, "-f", S2, "--event", "3 server1 crash"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "192.168.231.10: server1 -> server2" in proc.stdout


def test_partition_shows_split_brain_and_healing(capsys):
    rc, out, err = sim(capsys, "--json", "--event", "5.5 server1 partition", "--event", "12.5 server1 heal")
    assert rc == 0, err
    res = json.loads(out)
    moves = [(m["to"], m["at"]) for m in res["vip_moves"]]
    # server2 takes the VIP 3.008 s after server1's last advert (at 5 s); both hold it
    # until server1's first advert after the heal (13 s) sends server2 back to BACKUP.
    assert moves == [("server1", 0.0), ("server2", pytest.approx(5 + 3 + 2 / 256, abs=1e-6))]
    removed = [r for r in res["timeline"] if r["kind"] == "vip" and r["text"].endswith("removed")]
    assert [(r["node"], r["at"]) for r in removed] == [("server2", 13.0)]
    assert res["final"]["VI_1"] == {"server1": "MASTER", "server2": "BACKUP"}
    assert "Split brain" not in format_text(res)
    # Healed between server1's advert (13.0) and server2's (13.0078): server1 hears the
    # other master first, reports it and answers at once; server2 yields at 13.0078.
    rc, out, err = sim(capsys, "--event", "5.5 server1 partition", "--event", "13.003 server1 heal")
    assert rc == 0, err
    # One episode, reported once at the start and closed once server2 has been silent for
    # server1's Master_Down_Interval (3 + 1/256 s).
    assert ("     13.008 .. 16.012  server1/VI_1 with 192.0.2.2: 192.0.2.2 is also MASTER at lower priority "
            "254 (ours 255); ended: no advertisement from 192.0.2.2 for 3.004 s") in out
    assert out.count("split brain: ") == 1 and out.count("split brain over: ") == 1
    assert "13.008  server2/VI_1 MASTER -> BACKUP: higher priority 255 from 192.0.2.1" in out


def test_input_cut_split_brain_episode_in_json_and_text(capsys):
    rc, out, err = sim(capsys, "--json", "--event", "5.5 server2 input-cut", "--event", "13.5 server2 input-restore")
    assert rc == 0, err
    res = json.loads(out)
    # server2 stops hearing at 5.5 (last advert heard 5.0): MASTER at 8.008, heard by server1
    # at once; it yields at server1's first advert after 13.5 (14.008); its last advert was at
    # 13.008, so server1 closes the episode 3.004 s later.
    assert res["split_brain"] == [{
        "node": "server1", "instance": "VI_1", "start": pytest.approx(8.0078125), "end": pytest.approx(16.01171875),
        "peers": ["192.0.2.2"], "reason": "192.0.2.2 is also MASTER at lower priority 254 (ours 255)",
        "end_reason": "no advertisement from 192.0.2.2 for 3.004 s"}]
    assert res["final"]["VI_1"] == {"server1": "MASTER", "server2": "BACKUP"}
    text = format_text(res)
    assert "server2      incoming VRRP dropped (still sending)" in text
    assert "Split brain (a master heard another master):" in text and "8.008 .. 16.012  server1/VI_1" in text


def test_split_brain_still_on_at_the_end_is_shown_as_such(capsys):
    rc, out, err = sim(capsys, "--until", "12", "--event", "5.5 server2 input-cut")
    assert rc == 0, err
    assert "8.008 .. (still on)  server1/VI_1 with 192.0.2.2" in out and "still on at 12 s" in out


def test_seed_active_active_two_owners_lowered_then_reload(capsys):
    aa1, aa2 = (os.path.join(SEED, f"active-active-server{i}.conf") for i in (1, 2))
    rc = main(["simulate", "-f", aa1, "-f", aa2, "--address", "server1=192.168.231.11", "--address",
               "server2=192.168.231.12", "--event", "6.5 server1 partition", "--event", "12.5 server1 heal",
               "--event", "18.5 server1 stop", "--event", "24.5 server2 reload", "--until", "26"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 address owners (priority 255) on server1, server2: when two are MASTER at once" in out
    assert ("13.000  server2/VI_1 priority 255 -> 254: CONFIGURATION ERROR: 192.168.231.11 is also an address "
            "owner (priority 255)") in out
    assert "18.508  server2/VI_1 BACKUP -> MASTER: received priority 0 from 192.168.231.11" in out
    assert "24.500  server2/VI_1 priority 254 -> 255: configuration reloaded" in out
    assert "Split brain" not in out  # server2 yielded on the first advert it heard
