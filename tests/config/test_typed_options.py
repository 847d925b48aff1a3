"""Keywords the runtime acts on are typed fields, not entries of the ``options`` bag (issue 9 item 5).

check_unicast_src / lower_prio_no_advert (instance, with their global default),
the notify FIFOs and their reader scripts, and the one rounding of advert_int.
"""

from __future__ import annotations

import pytest

from chimeha.config import loads
from chimeha.config.render import render
from chimeha.vrrp.from_config import instance_spec
from chimeha.vrrp.timing import wire_interval

INST = ("vrrp_instance VI {{\n interface eth0\n virtual_router_id 1\n{body} unicast_peer {{\n  10.0.0.2\n }}\n"
        " virtual_ipaddress {{\n  10.0.0.100\n }}\n}}\n")


def conf(glob: str = "", body: str = "") -> str:
    head = f"global_defs {{\n{glob}}}\n" if glob else ""
    return head + INST.format(body=body)


def spec_of(text: str):
    r = loads(text, "t.conf")
    assert r.ok, r.diagnostics
    return r.config, instance_spec(r.config, r.config.instances["VI"])


@pytest.mark.parametrize("key", ["check_unicast_src", "lower_prio_no_advert"])
@pytest.mark.parametrize("glob,body,want", [
    ("", "", False),
    ("", " {key}\n", True),
    ("", " {key} off\n", False),
    (" vrrp_{key}\n", "", True),            # the global default reaches the instance
    (" vrrp_{key}\n", " {key} no\n", False),  # the instance's own line wins
    (" vrrp_{key} off\n", " {key}\n", True),
])
def test_flag_is_typed_with_global_default(key, glob, body, want):
    config, spec = spec_of(conf(glob.format(key=key), body.format(key=key)))
    inst = config.instances["VI"]
    assert getattr(inst, key) is want
    assert getattr(spec, key) is want
    assert key not in inst.options and f"vrrp_{key}" not in config.global_defs.options
    again = loads(render(config)).config
    assert getattr(again.instances["VI"], key) is want, render(config)


def test_ttl_bound_implies_the_source_check():
    text = conf().replace("  10.0.0.2\n", "  10.0.0.2 min_ttl 250\n")
    _, spec = spec_of(text)
    assert spec.check_unicast_src and spec.unicast_peer_ttl == (("10.0.0.2", 250, None),)


@pytest.mark.parametrize("glob,body,line", [
    ("", " lower_prio_no_advert maybe\n", 4),
    (" vrrp_check_unicast_src sometimes\n", "", 2),
])
def test_bad_flag_value_is_an_error_at_its_line(glob, body, line):
    r = loads(conf(glob, body), "t.conf")
    (err,) = r.errors
    assert (err.file, err.line, err.code) == ("t.conf", line, "invalid-bool")
    assert str(err).startswith(f"t.conf:{line}: error: ")


def test_notify_fifos_are_typed():
    glob = (" vrrp_notify_fifo /run/v.fifo\n notify_fifo /run/all.fifo\n"
            " vrrp_notify_fifo_script \"/usr/bin/reader --vrrp\"\n notify_fifo_script /usr/bin/reader\n")
    r = loads(conf(glob), "t.conf")
    gd = r.config.global_defs
    assert (gd.vrrp_notify_fifo, gd.notify_fifo) == ("/run/v.fifo", "/run/all.fifo")
    assert gd.vrrp_notify_fifo_script == ("/usr/bin/reader", "--vrrp")
    assert gd.notify_fifo_script == ("/usr/bin/reader",)
    assert not gd.options
    # the reader scripts are read but not started: said at their lines
    todo = sorted(d.line for d in r.diagnostics if d.code == "not-implemented")
    assert todo == [4, 5]
    again = loads(render(r.config), "t.conf").config.global_defs
    assert again == gd


def test_fifo_owner_words_are_reported_not_applied():
    r = loads(conf(" notify_fifo /run/all.fifo root wheel\n"), "t.conf")
    assert r.ok and r.config.global_defs.notify_fifo == "/run/all.fifo"
    (d,) = [d for d in r.diagnostics if d.code == "not-implemented"]
    assert d.line == 2 and "root wheel" in d.message


def test_fifo_without_a_path_is_an_error():
    r = loads(conf(" vrrp_notify_fifo\n"), "t.conf")
    assert [(d.line, d.code) for d in r.errors] == [(2, "missing-parameter")]
    assert r.config.global_defs.vrrp_notify_fifo is None


def test_same_fifo_twice_warns():
    r = loads(conf(" vrrp_notify_fifo /run/x.fifo\n notify_fifo /run/x.fifo\n"), "t.conf")
    assert [(d.line, d.code) for d in r.diagnostics if d.code == "same-fifo"] == [(3, "same-fifo")]


@pytest.mark.parametrize("written,version", [
    ("2.495", 2),  # 249.5 cs rounds to 250 cs, then to 3 s: the reader used to say 2 while the wire sent 3
    ("1.5", 2), ("0.4", 2), ("1.005", 3), ("0.125", 3), ("0.285", 3), ("2.495", 3),
])
def test_advert_int_is_used_as_the_wire_carries_it(written, version):
    text = conf(body=f" advert_int {written}\n version {version}\n")
    r = loads(text, "t.conf")
    inst = r.config.instances["VI"]
    assert inst.advert_int == wire_interval(float(written), version)
    (d,) = [d for d in r.diagnostics if d.code == "advert-int-rounded"]
    assert d.line == 4 and f"used as {inst.advert_int:g}" in d.message
