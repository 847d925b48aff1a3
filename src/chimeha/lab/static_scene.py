"""The static-configuration scene: one lab node, alone on its LAN, with a MASTER instance and static_* blocks.

``tests/system/test_static_system.py`` (what the kernel holds, chime-ha vs
keepalived) and ``bench/static/run.py`` (how fast rules come and go) run the
same scene; this is its one config builder.  The instance is alone, so it is
MASTER at once and its VIP must stay through a reload.
"""

from __future__ import annotations

from collections.abc import Iterable

NODE_ADDRESS = "10.77.0.11/24"
VIP = "10.77.0.100"


def _block(keyword: str, entries: Iterable[str], indent: str) -> str:
    lines = [f"{indent}    {entry}\n" for entry in entries]
    return f"{indent}{keyword} {{\n" + "".join(lines) + f"{indent}}}\n" if lines else ""


def static_config(*, static_ipaddress: Iterable[str] = (), static_routes: Iterable[str] = (),
                  static_rules: Iterable[str] = (), virtual_routes: Iterable[str] = (),
                  virtual_rules: Iterable[str] = ()) -> str:
    """keepalived.conf text: the static_* blocks with these entries (one a line; an empty block is left
    out), then instance VI_1 (MASTER, VRID 77, priority 200, VRRPv3 every 0.1 s, VIP 10.77.0.100/24)
    with these virtual_routes and virtual_rules."""
    return (_block("static_ipaddress", static_ipaddress, "")
            + _block("static_routes", static_routes, "")
            + _block("static_rules", static_rules, "")
            + "vrrp_instance VI_1 {\n"
              "    state MASTER\n"
              "    interface eth0\n"
              "    virtual_router_id 77\n"
              "    priority 200\n"
              "    advert_int 0.1\n"
              "    version 3\n"
              "    virtual_ipaddress {\n"
              f"        {VIP}/24\n"
              "    }\n"
            + _block("virtual_routes", virtual_routes, "    ")
            + _block("virtual_rules", virtual_rules, "    ")
            + "}\n")
