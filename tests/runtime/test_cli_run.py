"""`chime-ha run` refuses bad input with a clear message and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHIME_HA = str(Path(sys.executable).with_name("chime-ha"))


def _run(*args, timeout=30):
    return subprocess.run([CHIME_HA, "run", *args], capture_output=True, text=True, timeout=timeout)


def test_missing_file():
    p = _run("-f", "/nonexistent/keepalived.conf")
    assert p.returncode == 2
    assert "/nonexistent/keepalived.conf: no such file" in p.stderr
    assert "Traceback" not in p.stderr


def test_invalid_config_reports_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("vrrp_instance VI_1 {\n    virtual_router_id 300\n    interface eth0\n}\n")
    p = _run("-f", str(conf))
    assert p.returncode == 2
    assert f"{conf}:2:" in p.stderr  # the VRID line
    assert "not starting" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_arguments_are_usage_errors():
    p = _run("--log-level", "loud")
    assert p.returncode == 2
    assert "invalid choice" in p.stderr and "Traceback" not in p.stderr


def test_dump_dir_must_be_an_existing_directory(tmp_path):
    conf = tmp_path / "ok.conf"
    conf.write_text("global_defs {\n    router_id x\n}\n")
    p = _run("-f", str(conf), "--dump-dir", str(tmp_path / "nope"))
    assert p.returncode == 2
    assert f"--dump-dir {tmp_path / 'nope'}: no such directory" in p.stderr
    assert "Traceback" not in p.stderr
    p = _run("-f", str(conf), "--dump-dir", str(conf))
    assert p.returncode == 2
    assert "not a directory" in p.stderr and "Traceback" not in p.stderr


def test_dump_paths_put_keepalived_names_in_the_directory(tmp_path):
    from chimeha.cli.run import dump_paths

    paths = dump_paths(str(tmp_path))
    assert (paths.data, paths.stats, paths.json) == (
        f"{tmp_path}/keepalived.data", f"{tmp_path}/keepalived.stats", f"{tmp_path}/keepalived.json")


def test_proxy_workers_must_be_a_count_or_auto(tmp_path):
    conf = tmp_path / "ok.conf"
    conf.write_text("global_defs {\n    router_id x\n}\n")
    for bad in ("0", "many", "65"):
        p = _run("-f", str(conf), "--proxy-workers", bad)
        assert p.returncode == 2, bad
        assert "--proxy-workers" in p.stderr and "a number of processes (1-64) or auto" in p.stderr
        assert "Traceback" not in p.stderr


def test_proxy_workers_reach_the_virtual_server_manager():
    """`chime-ha run --proxy-workers` ends up in LvsManager(proxy_workers=...) via the daemon's lvs_options."""
    from chimeha.cli import run as run_cli
    from chimeha.lvs.backends.proxy_workers import default_workers
    from chimeha.runtime.lvs_manager import LvsManager

    assert run_cli._resolve_workers("3") == 3
    assert run_cli._resolve_workers("auto") == default_workers() >= 1
    from chimeha.config import loads
    cfg = loads("virtual_server 10.0.0.1 80 {\n  lb_algo rr\n  protocol TCP\n"
                "  real_server 10.0.0.2 80 {\n  }\n}\n").config
    lvs = LvsManager(cfg, dataplane="proxy", **{"snat_to": None, "proxy_workers": run_cli._resolve_workers("2")})
    assert lvs.proxy_workers == 2
