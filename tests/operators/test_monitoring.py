"""packaging/monitoring: alert rules pass promtool, and every metric they and the dashboard use exists."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest



def require(reason: str | None) -> None:
    """Skip with ``reason`` (a failure under CI=true), as tests/conftest.py's ``require``."""
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)

ROOT = Path(__file__).resolve().parents[2]
MON = ROOT / "packaging" / "monitoring"
RULES = MON / "chime-ha-alerts.yml"
DASHBOARD = MON / "chime-ha-dashboard.json"
CHIME = str(Path(sys.executable).with_name("chime-ha"))
ALERTS = {"ChimeHaSplitBrain", "ChimeHaNoMaster", "ChimeHaFlapping", "ChimeHaFailover", "ChimeHaTrackedScriptFailing",
          "ChimeHaRealServerDown", "ChimeHaQuorumLost", "ChimeHaPacketDrops"}


def _promtool() -> str:
    require(None if shutil.which("promtool") else "needs promtool (apt-get install prometheus)")
    return shutil.which("promtool")


def test_promtool_check_rules():
    proc = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def test_promtool_unit_tests_cover_every_alert():
    tests = MON / "tests" / "chime-ha-alerts.test.yml"
    proc = subprocess.run([_promtool(), "test", "rules", tests.name], capture_output=True, text=True, timeout=120,
                          cwd=tests.parent)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr
    tested = set(re.findall(r"alertname:\s*(\w+)", tests.read_text()))
    defined = set(re.findall(r"- alert:\s*(\w+)", RULES.read_text()))
    assert ALERTS <= defined and defined <= tested, (defined - tested, ALERTS - defined)
    # each alert is tested both firing and silent
    for name in defined:
        blocks = re.findall(rf"alertname: {name}\n\s+exp_alerts:(.*?)(?=\n\s+- eval_time|\n  - name|\Z)",
                            tests.read_text(), re.S)
        assert any("exp_labels" in b for b in blocks), f"{name} never tested firing"


def _exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    out = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    out += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    out += [v["query"] for v in dash["templating"]["list"] if v.get("type") == "query"]
    out += re.findall(r"expr:\s*\|?\s*\n?((?:.*\n)*?)\s+(?:for|labels):", RULES.read_text())
    return out


def referenced_metrics() -> set[str]:
    return {m for e in _exprs() for m in re.findall(r"\bchimeha_[a-z0-9_]+", e)}


def test_dashboard_is_grafana_json_with_a_datasource_variable():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "chime-ha" and dash["panels"]
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job", "vrrp_instance"} <= names
    for p in dash["panels"]:
        assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
    # the dashboard and the rules see the same label scheme as scrape-config.yml produces
    assert "target_label: vrrp_instance" in (MON / "scrape-config.yml").read_text()
    assert len(referenced_metrics()) >= 15


CONF = """\
global_defs {
    router_id mon1
}
vrrp_script chk_ok {
    script "/bin/true"
    interval 1
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 71
    priority 150
    advert_int 1
    virtual_ipaddress {
        192.168.231.70/24
    }
    track_script {
        chk_ok
    }
}
virtual_server 192.168.231.70 8801 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.168.231.79 8801 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""


def _names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE ") or line.startswith("# HELP "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def _exists(metric: str, names: set[str]) -> bool:
    if metric in names:
        return True
    base = re.sub(r"_(total|bucket|sum|count|created)$", "", metric)
    return base in names


@pytest.mark.system
def test_every_referenced_metric_is_served_by_a_running_daemon(topology, tmp_path):
    host = topology.add_host("mon", "192.168.231.71/24")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF)
    proc = host.popen([CHIME, "run", "-f", str(conf), "--control", str(tmp_path / "ctl.sock"), "--dataplane", "proxy",
                       "--dump-dir", str(tmp_path), "--metrics", "127.0.0.1:9650"],
                      stderr=open(tmp_path / "daemon.log", "w"))
    fetch = [sys.executable, "-c", "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
             "'http://127.0.0.1:9650/metrics', timeout=2).read().decode())"]
    wanted = referenced_metrics()
    missing = wanted
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        out = host.run(fetch, check=False, timeout=10)
        if out.returncode == 0:
            names = _names(out.stdout)
            missing = {m for m in wanted if not _exists(m, names)}
            if not missing:
                break
        time.sleep(0.5)
    log = (tmp_path / "daemon.log").read_text()[-2000:]
    assert proc.poll() is None, log
    assert not missing, f"referenced but not in /metrics: {sorted(missing)}\n{log}"
