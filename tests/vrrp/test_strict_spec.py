"""vrrp_strict / strict_mode: what the VRRP core runs with (keepalived 2.2.7's resets), with a fake clock."""

from __future__ import annotations

import pytest

from chimeha.config import loads
from chimeha.vrrp.from_config import instance_specs


def _conf(glob: str = "    vrrp_strict\n", extra: str = "", prio: int = 100, state: str = "MASTER",
          vips: str = "10.0.0.10") -> str:
    return (f"global_defs {{\n{glob}}}\n"
            f"vrrp_instance VI_1 {{\n    state {state}\n    interface eth0\n    virtual_router_id 51\n"
            f"    priority {prio}\n    advert_int 1\n    unicast_src_ip 10.0.0.1\n{extra}"
            f"    virtual_ipaddress {{\n        {vips}\n    }}\n}}\n")


def _spec(text: str):
    r = loads(text, "strict.conf")
    assert r.ok, [str(d) for d in r.diagnostics]
    return instance_specs(r.config)[0]


def test_strict_resets_what_keepalived_resets():
    extra = ("    authentication {\n        auth_type PASS\n        auth_pass secret\n    }\n"
             "    preempt_delay 5\n    down_timer_adverts 5\n    lower_prio_no_advert false\n"
             "    higher_prio_send_advert true\n    garp_lower_prio_repeat 3\n")
    s = _spec(_conf(extra=extra))
    assert (s.auth_type, s.initial_state, s.preempt_delay, s.down_timer_adverts) == (None, "BACKUP", 0.0, 3)
    assert (s.lower_prio_no_advert, s.higher_prio_send_advert, s.garp_lower_prio_repeat) == (True, False, 0)
    assert s.accept is False  # strict, not the owner: no_accept by default
    plain = _spec(_conf(glob="", extra=extra))
    assert (plain.auth_type, plain.initial_state, plain.preempt_delay, plain.down_timer_adverts) == (
        "PASS", "MASTER", 5.0, 5)
    assert plain.accept is True


@pytest.mark.parametrize("glob, extra, prio, accept", [
    ("    vrrp_strict\n", "", 100, False),
    ("    vrrp_strict\n", "", 255, True),                # the owner accepts
    ("    vrrp_strict\n", "    accept\n", 100, False),   # VRRPv2 non-owner: reset
    ("    vrrp_strict\n", "    version 3\n    accept\n", 100, True),
    ("", "", 100, True),
    ("", "    no_accept\n", 100, False),                 # no_accept alone filters too (keepalived)
    ("", "    strict_mode\n", 100, False),
    ("    vrrp_strict\n", "    strict_mode off\n", 100, True),  # the instance wins over the global
])
def test_accept_mode(glob, extra, prio, accept):
    assert _spec(_conf(glob=glob, extra=extra, prio=prio, state="BACKUP")).accept is accept


def test_strict_owner_starts_master_even_if_state_backup():
    assert _spec(_conf(prio=255, state="BACKUP")).initial_state == "MASTER"


def test_strict_ipv6_instance_is_v3():
    s = _spec(_conf(extra="    version 2\n", vips="fe80::10", state="BACKUP").replace("unicast_src_ip 10.0.0.1",
                                                                                     "unicast_src_ip fe80::1"))
    assert (s.family, s.version) == (6, 3)
