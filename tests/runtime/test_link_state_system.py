"""runtime/trackers.py InterfaceWatcher on real links in a namespace: up means IFF_UP and carrier.

The watcher runs inside the namespace (a child python); the test pulls the "cable" (the bridge
port of the veth) and puts it back, and flips the interface administratively.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.system

WATCH = textwrap.dedent("""\
    import asyncio, sys, time
    from chimeha.runtime.trackers import InterfaceWatcher, interface_up

    async def main():
        w = InterfaceWatcher([sys.argv[1], "nosuch9"],
                             lambda n, up: print(f"{time.monotonic():.3f} {n} {'up' if up else 'down'}", flush=True))
        w.start()
        w._poll_task.cancel()  # no 2 s safety poll: whatever is seen below came by a netlink event
        print("ready", flush=True)
        await asyncio.sleep(float(sys.argv[2]))
        w.stop()

    asyncio.run(main())
""")


def read_events(proc, until_text, timeout=5.0):
    """Lines of the watcher until one contains ``until_text`` (with the time it was read)."""
    end = time.monotonic() + timeout
    lines = []
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if until_text in line:
            return lines, time.monotonic()
    raise AssertionError(f"no {until_text!r} in {lines}")


def test_carrier_loss_and_admin_down_are_reported_by_netlink_events(topology):
    a = topology.add_host("a", "10.9.73.11/24")
    topology.add_host("b", "10.9.73.12/24")
    proc = a.popen([sys.executable, "-c", WATCH, a.ifname, "20"], stdout=subprocess.PIPE, text=True)
    try:
        lines, _ = read_events(proc, "ready")
        assert {" ".join(x.split()[1:]) for x in lines[:2]} == {f"{a.ifname} up", "nosuch9 down"}  # initial
        a.link_down()  # the switch port: our interface stays administratively up, carrier goes
        read_events(proc, f"{a.ifname} down")
        a.link_up()
        read_events(proc, f"{a.ifname} up")
        a.run(["ip", "link", "set", a.ifname, "down"])
        read_events(proc, f"{a.ifname} down")
        a.run(["ip", "link", "set", a.ifname, "up"])
        read_events(proc, f"{a.ifname} up")
    finally:
        proc.kill()
        proc.wait()


def test_interface_up_needs_carrier(topology):
    a = topology.add_host("a", "10.9.74.11/24")
    probe = [sys.executable, "-c", f"from chimeha.runtime.trackers import interface_up; print(interface_up('{a.ifname}'))"]
    assert a.run(probe).stdout.strip() == "True"
    a.link_down()  # IFF_UP still set, no carrier
    assert "UP" in a.run(["ip", "-o", "link", "show", a.ifname]).stdout.split(">")[0]
    assert a.run(probe).stdout.strip() == "False"
