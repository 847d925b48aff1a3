"""lvs_sync_daemon: parsing, the generated conntrackd.conf, the master rule, and the supervisor."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import textwrap

import pytest

from chimeha.config import loads
from chimeha.lab.netns import Topology
from chimeha.lvs.desired import sync_master
from chimeha.observe.metrics import Metrics
from chimeha.runtime.conntrackd import ConntrackSync, SyncSettings, parse_stats, render_conf

BASE = textwrap.dedent("""
    vrrp_instance VI_1 {
        interface eth0
        virtual_router_id 51
        virtual_ipaddress {
            10.0.0.10
            10.0.0.20
        }
    }
    vrrp_instance VI_2 {
        interface eth0
        virtual_router_id 52
        virtual_ipaddress {
            10.0.0.30
        }
    }
""")


def _cfg(line: str):
    r = loads(f"global_defs {{\n    {line}\n}}\n" + BASE, "s.conf")
    return r


def test_parses_interface_instance_port_group():
    r = _cfg("lvs_sync_daemon eth1 VI_1 port 4000 group 239.1.2.3")
    s = r.config.global_defs.lvs_sync_daemon
    assert (s.interface, s.instance, s.port, s.group) == ("eth1", "VI_1", 4000, "239.1.2.3")
    assert s.where.line == 2
    assert not [d for d in r.diagnostics if d.code in ("not-implemented", "no-effect")]


def test_instance_is_optional():
    s = _cfg("lvs_sync_daemon eth1 port 4000").config.global_defs.lvs_sync_daemon
    assert (s.interface, s.instance, s.port, s.group) == ("eth1", None, 4000, None)


def test_ipvs_only_options_warn_at_their_line():
    r = _cfg("lvs_sync_daemon eth1 VI_1 id 7 maxlen 1400 ttl 3")
    got = [(d.line, d.code) for d in r.diagnostics if d.code == "not-implemented"]
    assert got == [(2, "not-implemented")] * 3 and r.ok
    assert all("s.conf:2" in str(d) for d in r.diagnostics if d.code == "not-implemented")


@pytest.mark.parametrize("line,what", [("lvs_sync_daemon eth1 VI_1 port 70000", "port '70000' must be 1..65535"),
                                       ("lvs_sync_daemon eth1 VI_1 group nowhere", "not an IP address"),
                                       ("lvs_sync_daemon eth1 VI_1 port", "unexpected 'port'"),
                                       ("lvs_sync_daemon eth1 VI_1 bogus 1", "unexpected 'bogus'")])
def test_bad_options_are_errors_with_the_line(line, what):
    r = _cfg(line)
    errs = [str(d) for d in r.diagnostics if d.severity == "error"]
    assert errs and errs[0].startswith("s.conf:2:") and what in errs[0], errs


def test_master_follows_the_named_instance_vips():
    cfg = _cfg("lvs_sync_daemon eth1 VI_1").config
    assert sync_master(cfg, "VI_1", {"10.0.0.10", "10.0.0.20"})
    assert not sync_master(cfg, "VI_1", {"10.0.0.10"})  # half the addresses: not (yet) MASTER
    assert not sync_master(cfg, "VI_1", {"10.0.0.30"})  # another instance's VIP
    assert not sync_master(cfg, "VI_1", set())
    assert sync_master(cfg, None, {"10.0.0.30"})  # no instance named: any VRRP address
    assert not sync_master(cfg, None, {"10.9.9.9"})
    assert sync_master(cfg, "VI_1", None)  # no VRRP gating at all


def test_render_conf_ftfw_multicast():
    conf = render_conf(SyncSettings("ens160", "192.168.231.11", "/run/x", "239.1.2.3", 4000))
    assert "Mode FTFW {" in conf and "DisableExternalCache off" in conf
    assert "IPv4_address 239.1.2.3" in conf and "Group 4000" in conf
    assert "IPv4_interface 192.168.231.11" in conf and "Interface ens160" in conf
    for f in ("conntrackd.lock", "conntrackd.ctl", "conntrackd.log"):
        assert f"/run/x/{f}" in conf
    assert conf.count("{") == conf.count("}")


def test_parse_stats():
    text = ("cache internal:\ncurrent active connections:              227\nconnections created:  300\n"
            "cache external:\ncurrent active connections:               12\n")
    assert parse_stats(text) == {"internal": 227, "external": 12}
    assert parse_stats("garbage") == {}


def test_sync_metrics_rendered():
    snap = {"instances": {}, "scripts": {}, "virtual_servers": [], "drops_by_reason": {}, "bgp": None,
            "node": {"router_id": "r", "hostname": "h", "config_path": "c", "reloads": 0},
            "lvs_sync": {"running": True, "role": "master", "restarts": 2, "last_commit_at": 1234.5,
                         "entries_internal": 7, "entries_external": 3}}
    body = Metrics(lambda: snap).render().decode()
    assert "chimeha_lvs_sync_running 1.0" in body and "chimeha_lvs_sync_master 1.0" in body
    assert "chimeha_lvs_sync_restarts_total 2.0" in body
    assert "chimeha_lvs_sync_last_commit_timestamp_seconds 1234.5" in body
    assert 'chimeha_lvs_sync_entries{cache="external"} 3.0' in body


# ------------------------------------------------------------------ the real conntrackd


def _need_root():
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("needs root (network namespaces)")
    if shutil.which("conntrackd") is None:
        pytest.fail("conntrackd is not installed (scripts/bootstrap installs it)")


def test_supervisor_starts_restarts_and_stops_conntrackd():
    _need_root()

    async def scenario(ns: str) -> None:
        sync = ConntrackSync("eth0", netns=ns, port=3799)
        await sync.start()
        try:
            first = sync.proc.pid
            for _ in range(50):  # control socket up
                rc, _out = await sync.ctl("-s")
                if rc == 0:
                    break
                await asyncio.sleep(0.1)
            assert rc == 0
            await sync.set_master(True)
            assert sync.snapshot()["role"] == "master" and sync.last_commit_ok is True
            os.kill(first, signal.SIGKILL)  # conntrackd dies: the supervisor brings it back
            for _ in range(60):
                if sync.running and sync.proc.pid != first:
                    break
                await asyncio.sleep(0.1)
            assert sync.restarts == 1 and sync.running and sync.proc.pid != first
            assert "exited" in sync.snapshot()["last_error"]
            second = sync.proc.pid
        finally:
            await sync.stop()
        assert not sync.running
        assert subprocess.run(["kill", "-0", str(second)], capture_output=True).returncode != 0

    with Topology("ctd") as topo:
        host = topo.add_host("d1", "10.231.77.1/24")
        asyncio.run(scenario(host.netns))
