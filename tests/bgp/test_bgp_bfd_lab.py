"""``neighbor X { bfd }``: zebra + bfdd next to bgpd; a silent link loss withdraws within BFD detection."""

import shutil
import time

import pytest

from tests.conftest import require

pytestmark = pytest.mark.system


def test_bfd_withdraws_a_silent_director_before_the_hold_time(record_property):
    require(None if shutil.which("vtysh") and shutil.which("nft") else "needs FRR (apt-get install frr) and nftables")
    from chimeha.lab.bgp import DIRECTORS, HOLD, BgpLab

    allhops = set(DIRECTORS.values())
    with BgpLab("tbfd", bfd=True) as lab:
        assert lab.wait_next_hops(allhops, 60) is not None, lab.vtysh("show bgp summary")
        deadline = time.monotonic() + 15  # the status refresh runs every 2 s
        while time.monotonic() < deadline:
            peer = ((lab.status("d1").get("bgp") or {}).get("peers") or {}).get("10.99.1.1", {})
            if peer.get("bfd") == "up":
                break
            time.sleep(0.5)
        assert peer.get("state") == "Established" and peer.get("bfd") == "up", peer
        # the link goes down without a FIN or RST: only BFD (300 ms x 3) or the hold time (3 s) can tell
        lab.cut_link("d1")
        took = lab.wait_next_hops(allhops - {DIRECTORS["d1"]}, HOLD + 3)
        record_property("bfd_withdraw_s", took)
        print(f"\nBFD withdraw after a silent link loss: {took}")
        assert took is not None and took < HOLD - 1, took  # BFD, not the hold timer
        # SIGKILL of chime-ha takes zebra and bfdd with it, not only bgpd
        lab.kill_director("d2")
        assert lab.wait_next_hops(allhops - {DIRECTORS["d1"], DIRECTORS["d2"]}, HOLD + 2) is not None
        time.sleep(0.5)
        left = lab.nodes["d2"].run(["ps", "-eo", "comm"], check=False).stdout.split()
        assert not {"zebra", "bfdd", "bgpd"} & set(left), left
