"""`chime-ha simulate` output is byte-for-byte what it was before the simulator
became N VrrpNodes on a fake wire (golden files captured from main at 2b310c2)."""

import os

import pytest

from chimeha.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = os.path.join(ROOT, "examples", "seed")
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
AS = ["-f", os.path.join(SEED, "active-standby-server1.conf"), "-f", os.path.join(SEED, "active-standby-server2.conf")]
AA = ["-f", os.path.join(SEED, "active-active-server1.conf"), "-f", os.path.join(SEED, "active-active-server2.conf")]


def ev(*texts):
    out = []
    for t in texts:
        out += ["--event", t]
    return out


CASES = {
    "as_plain.json": AS + ["--json"],
    "as_plain.txt": AS,
    "as_check.json": AS + ["--json"] + ev("10 server1 check-fail chk_server", "30 server1 check-ok chk_server"),
    "as_link.json": AS + ["--json"] + ev("5 server1 link-down", "20 server1 link-up"),
    "as_stop.json": AS + ["--json"] + ev("5 server1 stop", "15 server1 start", "25 server2 crash"),
    "as_split.json": AS + ["--json"] + ev("5 server1 partition", "12 server1 heal", "20 server2 reload",
                                         "22 server1 input-cut", "30 server1 input-restore"),
    "aa_mixed.json": AA + ["--json"] + ev("5 server1 link-down", "20 server1 link-up", "30 server2 stop"),
    "as_track.json": AS + ["--json", "--latency", "0.01"] + ev("5 server1 track-down eth0", "9 server1 track-up eth0"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulate_output_unchanged(name, capsys):
    rc = main(["simulate", *CASES[name]])
    out = capsys.readouterr().out
    assert rc == 0
    with open(os.path.join(GOLDEN, name)) as fh:
        want = fh.read()
    assert out == want
