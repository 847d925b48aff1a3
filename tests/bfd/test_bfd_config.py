"""bfd_instance / track_bfd / BFD_CHECK from keepalived.conf: typed model and FILE:LINE diagnostics."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from chimeha.bfd.tracks import bfd_track_specs, tracking_instances
from chimeha.config import loads
from chimeha.config.build_bfd import BfdInstance, bfd_instances

GOOD = """bfd_instance peer {
    neighbor_ip 192.168.231.11
    source_ip 192.168.231.12
    min_rx 50
    min_tx 50.5
    idle_tx 2000
    multiplier 3
    passive
    ttl 250
    max_hops 5
    weight -20 reverse
}
bfd_instance six {
    neighbour_ip fe80::1
}
vrrp_sync_group G {
    group {
        VI_1
    }
    track_bfd {
        six weight 10
    }
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 5
    track_bfd {
        peer weight 60 reverse
    }
    virtual_ipaddress {
        10.0.0.1
    }
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 6
    track_bfd {
        peer
    }
    virtual_ipaddress {
        10.0.0.2
    }
}
"""

BAD = """bfd_instance peer {
    neighbor_ip 192.168.231.11
    min_rx 0.5
    min_tx 50.1234
    idle_tx 500
    multiplier 0
    weight 300
}
bfd_instance nonb {
    min_rx 50
}
bfd_instance fam {
    neighbor_ip 192.168.231.13
    source_ip fe80::2
    vrrp
}
"""


def test_every_keyword_typed_with_keepalived_units_and_defaults():
    r = loads(GOOD, "k.conf")
    assert r.ok, [str(d) for d in r.diagnostics]
    got, diags = bfd_instances(r.config)
    assert diags == []
    p = got["peer"]
    assert (p.neighbor_ip, p.source_ip, p.min_rx, p.min_tx, p.idle_tx, p.multiplier, p.passive, p.ttl,
            p.max_hops, p.weight, p.weight_reverse) == ("192.168.231.11", "192.168.231.12", 50.0, 50.5, 2000.0,
                                                        3, True, 250, 5, -20, True)
    assert p.where.line == 1 and p.positions["min_tx"] == 5
    six = got["six"]
    assert six == BfdInstance("six", six.where, neighbor_ip="fe80::1", positions=six.positions)
    assert (six.min_rx, six.min_tx, six.idle_tx, six.multiplier, six.weight, six.family) == (10, 10, 1000, 5, 0, 6)


def test_track_bfd_weights_from_the_reference_the_instance_and_the_sync_group():
    c = loads(GOOD, "k.conf").config
    t1 = {t.name: t for t in bfd_track_specs(c, c.instances["VI_1"])}
    assert (t1["peer"].kind, t1["peer"].weight, t1["peer"].reverse, t1["peer"].init_ok) == ("bfd", 60, True, False)
    assert (t1["six"].weight, t1["six"].reverse) == (10, False)  # from the sync group
    t2 = {t.name: t for t in bfd_track_specs(c, c.instances["VI_2"])}
    assert (t2["peer"].weight, t2["peer"].reverse) == (-20, True)  # the bfd_instance's own weight
    assert "six" not in t2
    assert tracking_instances(c, "peer") == ["VI_1", "VI_2"] and tracking_instances(c, "six") == ["VI_1"]
    from chimeha.vrrp.from_config import instance_specs
    # keepalived 2.2.7 -t: "(VI_1) ignoring tracked bfd peer with weight 60 due to SYNC group": a sync
    # group member's own weighted track_bfd is dropped (no sync_group_tracking_weight); the group's stays.
    bfds = [(t.name, t.weight, t.group) for t in instance_specs(c)[0].tracks if t.kind == "bfd"]
    assert bfds == [("six", 10, "G")]


def test_bad_values_are_errors_with_file_and_line():
    r = loads(BAD, "bad.conf")
    errs = sorted((d.line, d.code) for d in r.errors)
    assert errs == [(3, "invalid-value"), (4, "invalid-value"), (5, "invalid-value"), (6, "invalid-value"),
                    (7, "invalid-value"), (9, "missing-parameter"), (14, "family-mismatch")]
    # implemented now: the capability declaration no longer warns about the block
    assert not any(d.code == "not-implemented" and "bfd_instance" in d.message for d in r.warnings)
    got, _ = bfd_instances(r.config)
    assert list(got) == ["peer"]
    assert (got["peer"].min_rx, got["peer"].multiplier, got["peer"].weight) == (10.0, 5, 0)  # defaults kept
    assert str(next(d for d in r.errors if d.line == 6)).startswith("bad.conf:6: error: bfd_instance peer: multiplier")


def test_unknown_references_are_warned():
    text = GOOD.replace("        peer weight 60 reverse", "        nosuch weight 60")
    r = loads(text, "k.conf")
    w = [d for d in r.warnings if d.code == "unknown-bfd"]
    assert len(w) == 1 and w[0].line == 28 and "nosuch" in w[0].message


def test_duplicates_are_errors():
    text = GOOD + "bfd_instance peer {\n    neighbor_ip 192.168.231.99\n}\n" \
                  "bfd_instance again {\n    neighbor_ip 192.168.231.11\n    source_ip 192.168.231.12\n}\n"
    r = loads(text, "k.conf")
    codes = {d.code for d in r.errors}
    assert {"duplicate-name", "duplicate-address"} <= codes


@pytest.mark.keepalived
def test_keepalived_rejects_the_same_lines(tmp_path):
    """Our error lines are the lines keepalived 2.2.7 -t reports (its missing-neighbour error names the block's end)."""
    path = tmp_path / "bad.conf"
    path.write_text(BAD.split("bfd_instance fam")[0])
    out = subprocess.run([shutil.which("keepalived"), "-t", "-f", str(path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode != 0
    theirs = {int(m) for m in re.findall(r"Line (\d+)\)", out.stdout + out.stderr)}
    ours = {d.line for d in loads(path.read_text(), str(path)).errors}
    assert theirs - {11} == ours - {9}  # 11 / 9: the end / the start of the block without neighbor_ip
    assert {3, 4, 5, 6, 7} <= ours
