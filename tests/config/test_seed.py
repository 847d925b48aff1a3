"""The four seed configs: exact warnings at the right lines, no errors, the right model."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimeha.config import check_nodes, load
from chimeha.config.model import TcpCheck

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
AS1, AS2 = SEED / "active-standby-server1.conf", SEED / "active-standby-server2.conf"
AA1, AA2 = SEED / "active-active-server1.conf", SEED / "active-active-server2.conf"

EXPECTED = {
    AS1: {(2, "script-security")},
    AS2: {(2, "script-security")},
    AA1: {(20, "nat-same-subnet"), (25, "bare-weight"), (41, "nat-same-subnet"), (46, "bare-weight"),
          (62, "nat-same-subnet"), (67, "bare-weight")},
    AA2: {(5, "owner-backup"), (20, "nat-same-subnet"), (25, "bare-weight"), (42, "nat-same-subnet"),
          (47, "bare-weight"), (63, "nat-same-subnet"), (68, "bare-weight")},
}


@pytest.mark.parametrize("path", list(EXPECTED), ids=lambda p: p.stem)
def test_seed_exact_warnings_no_errors(path):
    result = load(str(path))
    assert result.ok and result.config is not None
    assert {(d.line, d.code) for d in result.diagnostics} == EXPECTED[path]
    assert all(d.severity == "warning" and d.file == str(path) for d in result.diagnostics)


def test_seed_bare_weight_line_is_the_weight_line():
    lines = AA1.read_text().splitlines()
    for d in load(str(AA1)).diagnostics:
        if d.code == "bare-weight":
            assert lines[d.line - 1].strip() == "weight"


def test_active_standby_model():
    c1, c2 = load(str(AS1)).config, load(str(AS2)).config
    script = c1.vrrp_scripts["chk_server"]
    assert script.script == ("/usr/bin/pgrep", "chime-server")  # the trailing comment does not leak
    assert script.interval == 2.0 and script.weight == 0 and script.fall == 1 and script.rise == 1
    assert script.where.line == 1
    i1, i2 = c1.instances["VI_1"], c2.instances["VI_1"]
    assert (i1.state, i1.priority, i2.state, i2.priority) == ("MASTER", 255, "BACKUP", 254)
    assert i1.interface == "ens160" and i1.virtual_router_id == 51
    assert i1.advert_int == 1.0 and i1.version == 2 and i1.family == 4
    assert (i1.auth_type, i1.auth_pass) == ("PASS", "1111")
    assert [v.address for v in i1.virtual_ipaddresses] == ["192.168.231.10/32"]
    assert i1.virtual_ipaddresses[0].where.line == 18
    assert [(t.name, t.weight, t.where.line) for t in i1.track_scripts] == [("chk_server", None, 21)]
    assert i1.garp_master_delay == 5.0 and i1.garp_master_repeat == 5 and not i1.nopreempt
    assert c1.virtual_servers == ()


def test_active_active_model_uses_weight_fallback():
    c = load(str(AA1)).config
    inst = c.instances["VI_1"]
    assert [v.address for v in inst.virtual_ipaddresses] == ["192.168.231.10/32", "192.168.231.20/32"]
    assert inst.track_scripts == ()
    assert [vs.key for vs in c.virtual_servers] == ["192.168.231.20:80", "192.168.231.10:8801", "192.168.231.10:8802"]
    for vs in c.virtual_servers:
        assert (vs.lb_algo, vs.lb_kind, vs.protocol, vs.delay_loop, vs.persistence_timeout) == ("rr", "NAT", "TCP", 6.0, 50)
        assert [rs.address for rs in vs.real_servers] == ["192.168.231.11", "192.168.231.12"]
        assert [rs.weight for rs in vs.real_servers] == [1, 1]  # bare weight -> the virtual server's (1)
        assert {rs.port for rs in vs.real_servers} == {8033 if vs.port == 80 else vs.port}
        for rs in vs.real_servers:
            (chk,) = rs.checkers
            assert isinstance(chk, TcpCheck) and chk.kind == "TCP_CHECK"
            assert chk.connect_timeout == 3.0 and chk.connect_port is None and chk.retry is None


def test_active_active_pair_two_owners():
    diags = check_nodes([load(str(AA1)), load(str(AA2))])
    assert [(Path(d.file).name, d.line, d.severity, d.code) for d in diags] == [
        ("active-active-server2.conf", 5, "warning", "peer-same-priority")]
    assert "255" in diags[0].message and "active-active-server1.conf:5" in diags[0].message


def test_active_standby_pair_is_consistent():
    assert check_nodes([load(str(AS1)), load(str(AS2))]) == []
