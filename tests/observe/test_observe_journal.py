import json
import os
import time

from chimeha.observe.journal import Journal, format_entry, read_file, to_wall_clock
from chimeha.vrrp.events import State, StateChanged

from observe_fakes import Event


def test_entries_are_appended_as_json_lines(tmp_path):
    path = tmp_path / "sub" / "journal.jsonl"
    j = Journal(str(path))
    j.append("transition", "VI_1", "BACKUP", "MASTER", "no advertisement from 192.168.231.11 for 3.008 s", 1795725799.5)
    j.append("transition", "VI_1", "MASTER", "BACKUP", "higher priority 255 from 192.168.231.11", 1795725805.25)
    lines = path.read_text().splitlines()
    assert [json.loads(x)["to"] for x in lines] == ["MASTER", "BACKUP"]
    first = json.loads(lines[0])
    assert first == {"seq": 1, "at": 1795725799.5, "kind": "transition", "instance": "VI_1", "from": "BACKUP",
                     "to": "MASTER", "reason": "no advertisement from 192.168.231.11 for 3.008 s"}


def test_restart_reads_the_file_back_and_continues_numbering(tmp_path):
    path = str(tmp_path / "j.jsonl")
    j = Journal(path)
    for i in range(5):
        j.append("transition", "VI_1", "BACKUP", "MASTER", f"r{i}", 1795725799.0 + i)
    with open(path, "a") as fh:
        fh.write('{"seq": 6, "at": 1795725810, "kind": "transi')  # torn by a crash mid-write
    again = Journal(path, maxlen=3)
    assert [e["reason"] for e in again.entries()] == ["r2", "r3", "r4"]
    assert again.append("transition", "VI_1", "MASTER", "BACKUP", "next", None)["seq"] == 6


def test_real_state_changed_event_is_recorded_with_state_names():
    j = Journal(None)
    entry = j.record(StateChanged(instance="VI_1", old=State.BACKUP, new=State.MASTER,
                                  reason="no advertisement from 192.168.231.11 for 3.008 s", at=time.monotonic()))
    assert (entry["from"], entry["to"]) == ("BACKUP", "MASTER")
    assert abs(entry["at"] - time.time()) < 5  # monotonic core time became wall-clock time


def test_monotonic_times_are_shifted_to_wall_clock():
    mono = time.monotonic() - 10
    assert abs(to_wall_clock(mono) - (time.time() - 10)) < 0.5
    assert to_wall_clock(1795725799.25) == 1795725799.25


def test_filters_limit_instance_and_after_seq():
    j = Journal(None)
    for i in range(6):
        j.append("transition", "VI_1" if i % 2 else "VI_2", "BACKUP", "MASTER", str(i), None)
    assert [e["reason"] for e in j.entries(instance="VI_1")] == ["1", "3", "5"]
    assert [e["reason"] for e in j.entries(limit=2)] == ["4", "5"]
    assert j.entries(limit=0) == []
    assert [e["seq"] for e in j.entries(after_seq=4)] == [5, 6]


def test_a_broken_listener_does_not_stop_the_journal_or_other_listeners():
    j = Journal(None)
    seen = []

    def broken(entry):
        raise RuntimeError("boom")
    j.subscribe(broken)
    unsubscribe = j.subscribe(seen.append)
    j.append("transition", "VI_1", "INIT", "BACKUP", "start", None)
    unsubscribe()
    j.append("transition", "VI_1", "BACKUP", "MASTER", "x", None)
    assert len(j) == 2 and [e["to"] for e in seen] == ["BACKUP"]


def test_unwritable_file_keeps_the_journal_in_memory(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    j = Journal(str(blocker / "journal.jsonl"))
    j.append("transition", "VI_1", "BACKUP", "MASTER", "x", None)
    assert [e["to"] for e in j.entries()] == ["MASTER"]


def test_read_file_missing_and_limit(tmp_path):
    assert read_file(str(tmp_path / "nope")) == []
    p = tmp_path / "j"
    p.write_text("\n".join(json.dumps({"seq": i}) for i in range(10)) + "\n[1,2]\nnot json\n")
    assert [e["seq"] for e in read_file(str(p), limit=3)] == [7, 8, 9]


def test_format_entry_reads_like_a_sentence():
    at = time.mktime((2026, 11, 26, 20, 43, 19, 0, 0, -1)) + 0.585
    line = format_entry({"at": at, "kind": "transition", "instance": "VI_1", "from": "BACKUP", "to": "MASTER",
                         "reason": "no advertisement from 192.168.231.11 for 3.008 s", "failover_seconds": 3.0121})
    assert line == ("2026-11-26 20:43:19.585  VI_1  BACKUP -> MASTER: no advertisement from 192.168.231.11 "
                    "for 3.008 s (failover 3.012 s)")
    sb = format_entry({"at": at, "kind": "split_brain", "instance": "VI_1", "peer": "192.168.231.12", "reason": "r"})
    assert "SPLIT BRAIN with 192.168.231.12: r" in sb
    assert format_entry({"at": "garbage", "instance": "x"}).startswith("????")


def test_journal_file_mode_is_not_world_readable(tmp_path):
    path = tmp_path / "j.jsonl"
    Journal(str(path)).record(Event("VI_1", "BACKUP", "MASTER", "x", None))
    assert os.stat(path).st_mode & 0o007 == 0
