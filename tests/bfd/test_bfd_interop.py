"""chime-ha's BFD against keepalived 2.2.7's BFD process and FRR's bfdd, in namespaces (system tests).

Both directions: each side must see the other's Up, its AdminDown, its
timer change (a Poll Sequence: the detection time follows), a cut link
(control detection time expired) and a restart of the peer.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest

from bfd_lab import A, A6, B, B6, FRR, ChimePeer, FrrPeer, KeepalivedPeer, bfd_block, eventually, have, require
from chimeha.lab.node import add_node

pytestmark = pytest.mark.system


def _need(kind: str) -> None:
    if kind == "keepalived":
        require(None if shutil.which("keepalived") else "keepalived is not installed")
    else:
        require(None if have(f"{FRR}/bfdd") else "FRR's bfdd is not installed (apt-get install frr)")


def make_peer(kind, node, me, other, tmp_path, **timers):
    if kind == "keepalived":
        return KeepalivedPeer(node, bfd_block(me, other, **timers), tmp_path)
    return FrrPeer(node, me, other, tmp_path, **timers)


def peer_timers(kind, peer, tx, rx, mult):
    if kind == "keepalived":
        peer.reload(bfd_block(peer.me, peer.other, tx=tx, rx=rx, mult=mult))
    else:
        peer.set_timers(tx, rx, mult)


@pytest.fixture
def lab(topology, tmp_path):
    a = add_node(topology, "a", f"{A}/24", f"{A6}/64")
    b = add_node(topology, "b", f"{B}/24", f"{B6}/64")
    started = []
    try:
        yield a, b, started
    finally:
        for p in started:
            p.stop()
        for p in started:
            print(f"--- {p.kind} on {p.node.name} ---\n{p.log()[-5000:]}")


@pytest.mark.parametrize("kind", ["keepalived", "frr"])
def test_up_timers_link_cut_restart(kind, lab, tmp_path):
    _need(kind)
    a, b, started = lab
    chime = ChimePeer(a, bfd_block(A, B), tmp_path).start()
    started.append(chime)
    peer = make_peer(kind, b, B, A, tmp_path)
    peer.me, peer.other = B, A
    started.append(peer.start())

    # -- up, at the configured 50 ms x 3 (after the slow start and its Poll Sequence)
    eventually(chime, "Up")
    eventually(peer, "Up")
    s = chime.session()
    eventually_value(lambda: chime.session()["detection_time_ms"], 150.0)
    assert 49152 <= s["source_port"] <= 65535
    assert s["remote_discriminator"] != 0 and s["counters"]["drops_by_reason"] == {}
    discr = s["local_discriminator"]

    # -- the peer slows down to 100 ms x 5: its Poll is answered, our detection time follows
    peer_timers(kind, peer, 100, 100, 5)
    eventually_value(lambda: chime.session()["detection_time_ms"], 500.0)
    s = chime.session()
    assert s["tx_interval_ms"] == 100.0 and s["remote_multiplier"] == 5 and s["state"] == "Up"
    assert s["counters"]["finals_sent"] >= 2  # the slow-start Poll and this one

    # -- chime-ha changes its own timers by SIGHUP: same session (discriminator kept), a Poll Sequence
    polls = s["counters"]["polls_completed"]
    chime.reload(bfd_block(A, B, tx=200, rx=200, mult=4))
    eventually_value(lambda: chime.session()["counters"]["polls_completed"], polls + 1, at_least=True)
    s = chime.session()
    assert s["local_discriminator"] == discr and s["state"] == "Up" and s["desired_min_tx_ms"] == 200.0
    if kind == "frr":
        eventually_value(lambda: peer.session().get("remote-transmit-interval"), 200)
        assert peer.session().get("remote-detect-multiplier") == 4
    else:
        # keepalived logs its view of the remote's timers: min_tx min_rx (us) ... mult
        eventually_value(lambda: bool(re.search(r"remote\s+200000\s+200000\s+\d+\s+4\b", peer.log())), True)
    assert peer.state() == "Up"

    # -- link cut: both sides detect it; restore: both Up again
    b.link_down()
    eventually(chime, "Down", 5)
    assert chime.session()["last_change"]["reason"].startswith("control detection time expired")
    eventually(peer, "Down", 5)
    b.link_up()
    eventually(chime, "Up", 15)
    eventually(peer, "Up", 15)

    # -- the peer restarts: chime-ha sees it go (AdminDown or detection) and come back
    ups = chime.session()["counters"]["up"]
    if kind == "frr":
        peer.restart_bfdd()
    else:
        peer.stop()
        started.remove(peer)
        peer = make_peer(kind, b, B, A, tmp_path, tx=100, rx=100, mult=5)
        peer.me, peer.other = B, A
        started.append(peer.start())
    eventually_value(lambda: chime.session()["counters"]["up"], ups + 1, at_least=True, timeout=15)
    eventually(chime, "Up", 15)
    assert chime.session()["counters"]["down"] >= 2


@pytest.mark.parametrize("kind", ["keepalived", "frr"])
def test_admin_down_both_ways(kind, lab, tmp_path):
    _need(kind)
    a, b, started = lab
    chime = ChimePeer(a, bfd_block(A, B), tmp_path).start()
    started.append(chime)
    peer = make_peer(kind, b, B, A, tmp_path)
    peer.me, peer.other = B, A
    started.append(peer.start())
    eventually(chime, "Up")
    eventually(peer, "Up")

    # chime-ha's side goes: removing the bfd_instance by reload tells the peer AdminDown (RFC 5880 6.8.16)
    chime.reload("")
    eventually_value(lambda: "peer" in (chime.d.status().get("bfd") or {}).get("sessions", {}), False)
    if kind == "frr":
        eventually_value(lambda: peer.session().get("remote-diagnostic"), "administratively down")
        assert peer.state() == "Down"
    else:
        eventually_value(lambda: "Remote diagnostic - Administratively Down" in peer.log(), True)
        assert peer.state() == "Down"
    chime.reload(bfd_block(A, B))
    eventually(chime, "Up", 15)
    eventually(peer, "Up", 15)

    # the peer's side goes administratively down
    if kind == "frr":
        peer.shutdown(True)
        eventually(chime, "Down", 5)
        assert "administratively down" in chime.session()["last_change"]["reason"]
        peer.shutdown(False)
    else:
        # keepalived 2.2.7 has no admin-down: a reload that drops the bfd_instance (or a stop) just goes
        # silent, observed in this lab; chime-ha sees the detection time expire
        peer.reload("")
        eventually(chime, "Down", 5)
        assert chime.session()["last_change"]["reason"] == "control detection time expired, 150 ms"
        peer.reload(bfd_block(B, A))
    eventually(chime, "Up", 15)
    eventually(peer, "Up", 15)


def test_ipv6_against_frr(lab, tmp_path):
    _need("frr")
    a, b, started = lab
    chime = ChimePeer(a, bfd_block(A6, B6), tmp_path).start()
    started.append(chime)
    peer = FrrPeer(b, B6, A6, tmp_path)
    started.append(peer.start())
    eventually(chime, "Up", 15)
    eventually(peer, "Up", 15)
    eventually_value(lambda: chime.session()["detection_time_ms"], 150.0)
    b.link_down()
    eventually(chime, "Down", 5)
    assert chime.session()["last_change"]["reason"] == "control detection time expired, 150 ms"


def eventually_value(fn, want, *, at_least: bool = False, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if (last is not None and last >= want) if at_least else last == want:
            return last
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout} s for {want!r}{' or more' if at_least else ''}; last {last!r}")
