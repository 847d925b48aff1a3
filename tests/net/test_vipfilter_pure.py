"""net/vipfilter.py without nft: the rendered table and when it is (re)loaded."""

from __future__ import annotations

from chimeha.net.vipfilter import TABLE, VipFilter, render


def test_render_holds_exactly_the_addresses_in_both_chains():
    script = render(["10.0.0.5/32", "10.0.0.4", "2001:db8::7/128"])
    assert script.startswith(f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")  # replace, atomically
    assert "set vips4 { type ipv4_addr; elements = { 10.0.0.4, 10.0.0.5 }; }" in script
    assert "set vips6 { type ipv6_addr; elements = { 2001:db8::7 }; }" in script
    assert "type filter hook input priority -1" in script and "type filter hook output priority -1" in script
    assert "ip daddr @vips4 drop" in script and "ip saddr @vips4 drop" in script
    # neighbour discovery still works for an IPv6 VIP, and comes before the drop
    assert script.index("nd-neighbor-solicit") < script.index("ip6 daddr @vips6 drop")


def test_render_nothing_deletes_the_table():
    assert render([]) == f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"


def test_filter_loads_on_change_only_and_deletes_at_close():
    loaded: list[str] = []
    vf = VipFilter(runner=loaded.append)
    vf.set("VI_1", ["10.0.0.5/32"], True)
    vf.set("VI_2", ["10.0.0.6/32"], True)
    vf.set("VI_2", ["10.0.0.6/32"], True)  # no change: no reload
    assert len(loaded) == 2 and vf.blocked == {"10.0.0.5", "10.0.0.6"}
    vf.set("VI_1", (), False)
    assert "10.0.0.5" not in loaded[-1] and "10.0.0.6" in loaded[-1]
    vf.close()
    assert loaded[-1] == render([]) and vf.blocked == frozenset()


def test_close_without_ever_loading_touches_nothing():
    loaded: list[str] = []
    VipFilter(runner=loaded.append).close()
    assert loaded == []


def test_a_failing_nft_is_counted_and_retried_on_the_next_change():
    calls: list[str] = []

    def broken(script: str) -> None:
        calls.append(script)
        raise OSError("Error: Could not process rule: Operation not permitted")

    vf = VipFilter(runner=broken)
    vf.set("VI_1", ["10.0.0.5"], True)
    vf.set("VI_1", ["10.0.0.5"], True)  # not loaded yet: tried again
    assert vf.errors == 2 and len(calls) == 2
