"""VrrpSocket's multicast groups and per-packet TTL against the real kernel, inside lab namespaces."""

from __future__ import annotations

import json

import pytest

from nshelp_net import popen_py, run_py

pytestmark = pytest.mark.system


def _receiver(family: int, want: int, setup: tuple[str, ...] = (),
              report: tuple[str, ...] = ("print(json.dumps(got))",)) -> str:
    """A snippet to ``.format(ifname=...)``: a VrrpSocket on ``ifname`` runs the ``setup`` lines, prints
    ready, collects ``want`` packets as ``[dst, ttl]`` (for 6 s at most), then runs the ``report`` lines."""
    return "\n".join([
        "import json, select, subprocess, time",
        "from chimeha.net.vrrpsock import VrrpSocket",
        f"s = VrrpSocket({{ifname!r}}, {family}, join_group=False)",
        *setup,
        'print("ready", flush=True)',
        "got = []",
        "deadline = time.time() + 6",
        f"while len(got) < {want} and time.time() < deadline:",
        "    r, _, _ = select.select([s], [], [], 0.3)",
        "    if r and (m := s.recv()):",
        "        got.append([m.dst, m.ttl])",
        *report,
        "",
    ])


def _sender(family: int, not_joined: str, joined: str, with_src: bool = False) -> str:
    """A snippet to ``.format(ifname=..., payload=..., peer=...[, src=...])``: the payload to a group the
    receiver did not join (never delivered), to the one it joined, and to ``peer`` with TTL 9 (unicast_ttl)."""
    src = ", src_addr={src!r}" if with_src else ""
    return "\n".join([
        "import json",
        "from chimeha.net.vrrpsock import VrrpSocket",
        f"s = VrrpSocket({{ifname!r}}, {family}{src}, join_group=False)",
        f"s.send(bytes.fromhex({{payload!r}}), {not_joined!r})",
        f"s.send(bytes.fromhex({{payload!r}}), {joined!r})",
        "s.send(bytes.fromhex({payload!r}), {peer!r}, ttl=9)",
        "print(json.dumps(True))",
        "",
    ])


MADDR = 'subprocess.run(["ip", "maddr", "show", "dev", {ifname!r}], capture_output=True, text=True).stdout'
GROUPS = _receiver(4, 1, setup=(
    's.join("224.0.0.99")',
    's.join("224.0.0.99")  # idempotent',
    f"joined = {MADDR}",
), report=(
    "s.leave_others(set())",
    f"left = {MADDR}",
    'print(json.dumps(dict(joined="224.0.0.99" in joined, left="224.0.0.99" not in left, got=got,'
    " groups=sorted(s.groups))))",
))
SEND = _sender(4, "224.0.0.18", "224.0.0.99", with_src=True)
RECV_UNICAST = _receiver(4, 1)


def test_custom_group_join_receive_leave_and_unicast_ttl(topology):
    a = topology.add_host("a", "10.1.0.1/24")
    b = topology.add_host("b", "10.1.0.2/24")
    c = topology.add_host("c", "10.1.0.3/24")
    payload = bytes([0x31, 7, 100, 1, 0, 100, 0, 0]) + bytes([10, 1, 0, 9])
    rx = popen_py(b, GROUPS.format(ifname=b.ifname))
    uc = popen_py(c, RECV_UNICAST.format(ifname=c.ifname))
    assert rx.stdout.readline().strip() == "ready" and uc.stdout.readline().strip() == "ready"
    run_py(a, SEND.format(ifname=a.ifname, src="10.1.0.1", payload=payload.hex(), peer="10.1.0.3"))
    out, err = rx.communicate(timeout=15)
    assert rx.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res == dict(joined=True, left=True, got=[["224.0.0.99", 255]], groups=[])
    out, err = uc.communicate(timeout=15)
    assert json.loads(out.strip().splitlines()[-1]) == [["10.1.0.3", 9]]


RECV6 = _receiver(6, 2, setup=('s.join("ff02::99")',))
SEND6 = _sender(6, "ff02::12", "ff02::99")


def test_ipv6_custom_group_and_unicast_hop_limit(topology):
    import time

    a = topology.add_host("a", "fd00:1::1/64")
    b = topology.add_host("b", "fd00:1::2/64")
    for h in (a, b):
        deadline = time.time() + 10
        while time.time() < deadline and "tentative" in h.run(["ip", "-6", "addr", "show", "dev", h.ifname]).stdout:
            time.sleep(0.1)
    payload = bytes([0x31, 9, 100, 1, 0, 100, 0, 0]) + bytes(16)
    rx = popen_py(b, RECV6.format(ifname=b.ifname))
    assert rx.stdout.readline().strip() == "ready"
    run_py(a, SEND6.format(ifname=a.ifname, payload=payload.hex(), peer="fd00:1::2"))
    out, err = rx.communicate(timeout=15)
    assert rx.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == [["ff02::99", 255], ["fd00:1::2", 9]]
