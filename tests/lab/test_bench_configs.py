"""The failover benchmark's config variants are valid and differ from the seed only as intended."""

import importlib.util
from pathlib import Path

import pytest

import chimeha.config
from chimeha.lab.node import add_node

_spec = importlib.util.spec_from_file_location(
    "bench_failover_run", Path(__file__).resolve().parents[2] / "bench" / "failover" / "run.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _instances(text):
    res = chimeha.config.loads(text, "variant.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    return res.config.instances


def test_fast_variant_changes_only_version_and_interval():
    seed = bench.variant_configs("seed")
    fast = bench.variant_configs("v3-fast")
    for node in ("server1", "server2"):
        (a,) = _instances(seed[node]).values()
        (b,) = _instances(fast[node]).values()
        assert (a.version, a.advert_int) == (2, 1.0)
        assert (b.version, b.advert_int) == (3, 0.1)
        assert (a.priority, a.virtual_router_id, a.auth_pass) == (b.priority, b.virtual_router_id, b.auth_pass)
    assert bench.check_interval(fast) == bench.check_interval(seed) == 2.0


@pytest.mark.parametrize("count", [1, 100])
def test_many_instances_config_has_distinct_vrids_and_vips(count):
    for node, prio in (("server1", 255), ("server2", 254)):
        inst = _instances(bench.many_instances_config(node, count))
        assert len(inst) == count
        assert len({i.virtual_router_id for i in inst.values()}) == count
        vips = {v.address for i in inst.values() for v in i.virtual_ipaddresses}
        assert len(vips) == count
        assert {i.priority for i in inst.values()} == {prio}


@pytest.mark.system
@pytest.mark.keepalived
def test_keepalived_accepts_the_variants_like_the_seed(topology):
    """keepalived -t (inside a node that has ens160) says no more about the variants than about the seed."""
    node = add_node(topology, "server1", "192.168.231.11/24", ifname="ens160")

    def check(text):
        node.write_file("/etc/keepalived/t.conf", text)
        return node.run(["keepalived", "-t", "-f", "/etc/keepalived/t.conf"], check=False).returncode

    seed_rc = check(bench.variant_configs("seed")["server1"])
    assert check(bench.variant_configs("v3-fast")["server1"]) == seed_rc
    assert check(bench.many_instances_config("server1", 100)) == seed_rc
    # and a broken config is told apart (the check above could not pass vacuously)
    assert check("vrrp_instance X {\n  virtual_router_id 999\n}\n") != seed_rc
