"""``chime-ha lab bgp``: the report (pure) and a whole run (root, namespaces)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from chimeha.lab.bgp_runner import STEPS, BgpReport, BgpStep, format_report
from tests.conftest import require

CHIME = [sys.executable, "-c", "import sys; from chimeha.cli import main; sys.exit(main())"]


def _step(n, ok=True, **kw):
    name, title = STEPS[n - 1]
    return BgpStep(n, name, title, ok, kw.pop("message", "fine"), **kw)


def test_report_passes_only_when_every_step_ran_and_passed():
    full = BgpReport([_step(i + 1, seconds=0.5) for i in range(len(STEPS))], 12.0, "/tmp/x")
    assert full.ok and format_report(full).endswith("RESULT: PASS")
    assert full.as_dict()["ok"] is True and full.as_dict()["mode"] == "bgp"
    short = BgpReport([_step(1), _step(2)], 3.0, "")
    assert not short.ok  # stopped early: not a pass even though both ran fine
    text = format_report(short)
    assert "SKIP  kill" in text and text.endswith("RESULT: FAIL")


def test_failed_step_and_dead_fraction_are_reported():
    kill = _step(3, ok=False, message="killed d2; next hop NOT within the hold time", seconds=None,
                 measured={"dead_conns": 40, "dead_continued": 3})
    rep = BgpReport([_step(1), _step(2), kill], 9.0, "", error=None)
    text = format_report(rep)
    assert "FAIL  kill" in text and "SKIP  rejoin" in text
    assert "continued: 3/40" in text and text.endswith("RESULT: FAIL")


@pytest.mark.system
def test_lab_bgp_refuses_options_it_cannot_honour():
    proc = subprocess.run([*CHIME, "lab", "bgp", "--keep"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "no --keep" in proc.stderr, proc.stderr


@pytest.mark.system
@pytest.mark.parametrize("forwarding", ["nat", "direct"])
def test_lab_bgp_runs_every_step_and_passes(forwarding):
    require(None if shutil.which("vtysh") and shutil.which("nft") else "needs FRR (apt-get install frr) and nftables")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([*CHIME, "lab", "bgp", "--json", "--tag", "tbcj", "--forwarding", forwarding],
                          capture_output=True, text=True, timeout=300, env=env)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and report["ok"], (report, proc.stderr[-2000:])
    assert [s["name"] for s in report["steps"]] == [n for n, _ in STEPS]
    kill = next(s for s in report["steps"] if s["name"] == "kill")
    assert kill["measured"]["survivor_failures"] == 0 and kill["measured"]["dead_conns"] > 0
    assert kill["seconds"] <= 3  # the hold time
    m = kill["measured"]
    if forwarding == "direct":  # steered: the dead director's established connections all continue
        assert m["dead_continued"] == m["dead_conns"], m
    else:  # NAT + masquerade: the next director resets them
        assert m["dead_continued"] == 0, m
    assert "[3/6]" in proc.stderr  # progress goes to stderr with --json
