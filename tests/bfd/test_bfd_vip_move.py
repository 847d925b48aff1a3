"""BFD moves the VIP: a backup whose tracked session to the master goes Down takes over at once (system).

Two nodes, VRRPv2 advert_int 1 (Master_Down_Interval 3 s + skew), a 50 ms x 3
BFD session, the backup tracks it (``track_bfd { peer weight 60 reverse }``,
priorities 200/150, the issue's keepalived setup). The master's link is cut:
without the BFD step the backup waits >= 3.4 s; with it, detection (150 ms)
+ Skew_Time (0.41 s at priority 150) + the VIP add. The bound asserted here
is loose (1.5 s) so a loaded machine cannot fail it; bench/bfd measures.
"""

from __future__ import annotations

import shutil
import time

import pytest

from bfd_lab import A, B, ChimePeer, KeepalivedPeer, bfd_block, eventually, require, vrrp_block
from chalab import Daemon, settle_on, wait_until
from chimeha.lab.node import add_node

pytestmark = pytest.mark.system

VIP = "10.9.3.100"
TRACK = "    track_bfd {\n        peer weight 60 reverse\n    }\n"


@pytest.mark.parametrize("master_kind", ["chime-ha", "keepalived"])
def test_link_cut_moves_the_vip_well_before_the_master_down_timer(master_kind, topology, tmp_path):
    if master_kind == "keepalived" and not shutil.which("keepalived"):
        require("keepalived is not installed")
    a = add_node(topology, "a", f"{A}/24")
    b = add_node(topology, "b", f"{B}/24")
    master_conf = bfd_block(A, B) + vrrp_block("MASTER", 200)
    backup_conf = bfd_block(B, A) + vrrp_block("BACKUP", 150, TRACK)
    master = (ChimePeer if master_kind == "chime-ha" else KeepalivedPeer)(a, master_conf, tmp_path).start()
    backup = ChimePeer(b, backup_conf, tmp_path).start()
    try:
        eventually(backup, "Up", 15)
        settle_on([a, b], VIP, "a", 15)
        inst = backup.d.status()["instances"]["VI_B"]
        assert inst["state"] == "BACKUP" and inst["effective_priority"] == 90  # 150 - 60 while Up (reverse)

        t0 = time.monotonic()
        a.link_down()
        wait_until(lambda: VIP in b.addresses_on(), 5, f"{VIP} on b", interval=0.01)
        took = time.monotonic() - t0
        assert took < 1.5, f"VIP moved after {took:.3f} s (the Master_Down_Timer alone is >= 3.4 s)"

        inst = backup.d.status()["instances"]["VI_B"]
        assert inst["state"] == "MASTER"
        assert inst["last_transition"]["reason"] == f"BFD to {A} down: control detection time expired, 150 ms"
        assert backup.d.status()["bfd"]["takeovers"] == 1

        # the old master comes back: BFD Up again, the backup gives way (200 > 90, preempt)
        a.link_up()
        eventually(backup, "Up", 15)
        settle_on([a, b], VIP, "a", 15)
    finally:
        master.stop()
        backup.stop()
        print("--- master ---\n" + master.log()[-5000:])
        print("--- backup ---\n" + backup.log()[-5000:])


def test_without_a_bfd_down_nothing_moves_early(topology, tmp_path):
    """The same pair, but the session goes Down while the master is fine (the BFD peer address is
    wrong on purpose after a reload): the backup's priority changes, yet it does not take the VIP:
    master_unreachable only acts for the current master's address."""
    a = add_node(topology, "a", f"{A}/24")
    b = add_node(topology, "b", f"{B}/24")
    master = ChimePeer(a, bfd_block(A, B) + vrrp_block("MASTER", 200), tmp_path).start()
    # backup priority 100 (40 while the session is Up): only the BFD step could move it
    backup = ChimePeer(b, bfd_block(B, A) + vrrp_block("BACKUP", 100, TRACK), tmp_path).start()
    try:
        eventually(backup, "Up", 15)
        settle_on([a, b], VIP, "a", 15)
        master.reload(vrrp_block("MASTER", 200))  # the master drops its bfd_instance: AdminDown to b
        eventually(backup, "Down", 5)
        inst = backup.d.status()["instances"]["VI_B"]
        assert inst["effective_priority"] == 100 and inst["state"] == "BACKUP"
        # AdminDown is not a failure of the master: no early takeover, the VIP stays on a
        settle_on([a, b], VIP, "a", 5, hold=4.0)
        assert backup.d.status()["bfd"]["takeovers"] == 0
    finally:
        master.stop()
        backup.stop()
        print("--- backup ---\n" + backup.log()[-5000:])
