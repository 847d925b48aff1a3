"""Cross-node checks: instances sharing a VRID must agree; one intended master."""

from __future__ import annotations

from chimeha.config import check_nodes, loads


def node(name: str, state="BACKUP", prio=100, vrid=51, adv="1", vips=("10.0.0.10",), auth="1111",
         version=None, extra=""):
    vip_lines = "\n".join(f"        {v}" for v in vips)
    ver = f"    version {version}\n" if version else ""
    text = f"""vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id {vrid}
    priority {prio}
    advert_int {adv}
{ver}    authentication {{
        auth_type PASS
        auth_pass {auth}
    }}
    virtual_ipaddress {{
{vip_lines}
    }}
{extra}}}
"""
    return loads(text, filename=name)


def codes(diags):
    return [(d.file, d.line, d.severity, d.code) for d in diags]


def test_consistent_pair_is_clean():
    assert check_nodes([node("a", "MASTER", 200), node("b", "BACKUP", 100)]) == []


def test_vip_mismatch_is_an_error():
    d = check_nodes([node("a", "MASTER", 200), node("b", prio=100, vips=("10.0.0.10", "10.0.0.11"))])
    assert codes(d) == [("b", 1, "error", "peer-mismatch")]
    assert "virtual IP addresses" in d[0].message and "10.0.0.11/32" in d[0].message


def test_advert_int_version_and_auth_mismatch():
    d = check_nodes([node("a", "MASTER", 200), node("b", adv="2")])
    assert codes(d) == [("b", 1, "error", "peer-mismatch")] and "advert_int" in d[0].message
    d = check_nodes([node("a", "MASTER", 200, auth="x"), node("b", auth="y")])
    assert codes(d) == [("b", 1, "error", "peer-mismatch")] and "authentication" in d[0].message
    d = check_nodes([node("a", "MASTER", 200, version=3, auth=""), node("b", version=2)])
    assert ("b", 1, "error", "peer-mismatch") in codes(d) and "VRRP version" in d[0].message


def test_auth_compared_on_the_eight_bytes_sent():
    assert check_nodes([node("a", "MASTER", 200, auth="12345678x"), node("b", auth="12345678y")]) == []


def test_equal_priorities_warn_at_the_priority_line():
    d = check_nodes([node("a", "MASTER", 100), node("b", "BACKUP", 100)])
    assert codes(d) == [("b", 5, "warning", "peer-same-priority")]
    assert "a:5" in d[0].message


def test_master_count_and_master_not_highest():
    d = check_nodes([node("a", "MASTER", 200), node("b", "MASTER", 100)])
    assert [c[3] for c in codes(d)] == ["peer-master-count"]
    d = check_nodes([node("a", "BACKUP", 200), node("b", "BACKUP", 100)])
    assert [c[3] for c in codes(d)] == ["peer-master-count"] and "0 of 2" in d[0].message
    d = check_nodes([node("a", "MASTER", 100), node("b", "BACKUP", 200)])
    assert codes(d) == [("a", 5, "warning", "peer-master-not-highest")]


def test_different_vrids_are_not_compared():
    assert check_nodes([node("a", "MASTER", 200, vrid=51), node("b", "MASTER", 200, vrid=52, adv="3")]) == []


def test_three_nodes():
    d = check_nodes([node("a", "MASTER", 200), node("b", prio=150), node("c", prio=150, adv="2")])
    assert sorted(c[3] for c in codes(d)) == ["peer-mismatch", "peer-same-priority"]


def test_unloadable_node_is_skipped():
    from chimeha.config import load

    assert check_nodes([node("a", "MASTER", 200), load("/nonexistent/chimeha.conf")]) == []
