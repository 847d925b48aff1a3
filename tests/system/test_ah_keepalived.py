"""IPsec AH (``auth_type AH``) on the wire with the real keepalived 2.2.7, in namespaces.

keepalived's AH adverts are IP protocol 51 with an HMAC-MD5-96 ICV; a peer
that gets one byte of the envelope wrong is dropped ("invalid IPSEC HMAC-MD5
value"), so a mixed pair that elects one master, hands over on SIGTERM and
preempts back proves both directions: keepalived accepts our ICV, SPI and
sequence numbers and we accept its. A mismatched auth_pass must split the pair
(each drops the other), with the drops counted as ``auth``.
"""

from __future__ import annotations

import pytest

from chalab import Daemon, holders, settle_on, stopped_at_end, wait_until

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

A, B, VIP = "10.7.5.11", "10.7.5.12", "10.7.5.100"


def conf(*, state: str, priority: int, password: str = "s3cret") -> str:
    return "\n".join([
        "vrrp_instance VI_AH {", f"    state {state}", "    interface eth0", "    virtual_router_id 45",
        f"    priority {priority}", "    advert_int 1",
        "    authentication {", "        auth_type AH", f"        auth_pass {password}", "    }",
        "    virtual_ipaddress {", f"        {VIP}/24", "    }", "}", ""])


def _pair(topology):
    from chimeha.lab.node import add_node

    return add_node(topology, "a", f"{A}/24"), add_node(topology, "b", f"{B}/24")


@pytest.mark.parametrize("chime_master", [True, False], ids=["chimeha-master", "keepalived-master"])
def test_ah_mixed_cluster_elects_hands_over_and_preempts(topology, tmp_path, chime_master):
    a, b = _pair(topology)
    kinds = ("chime-ha", "keepalived") if chime_master else ("keepalived", "chime-ha")
    # state MASTER with AH starts as BACKUP on both daemons (it must hear the
    # master's sequence number first), so a comes up by preempting b.
    master = Daemon(a, kinds[0], conf(state="MASTER", priority=200), tmp_path)
    backup = Daemon(b, kinds[1], conf(state="BACKUP", priority=100), tmp_path)
    nodes = [a, b]
    with stopped_at_end(master, backup):
        backup.start()
        settle_on(nodes, VIP, "b", timeout=8, hold=0.5)
        master.start()
        settle_on(nodes, VIP, "a", timeout=10, hold=2.5)  # b accepted a's AH adverts and let go
        master.stop()  # priority 0 over AH: b takes over after skew time
        settle_on(nodes, VIP, "b", timeout=5, hold=1.5)
        master.start()  # a restarts with its counter at 0: it learns b's, then preempts above it
        settle_on(nodes, VIP, "a", timeout=10, hold=2.5)
        assert backup.alive()
        ka = master if master.kind == "keepalived" else backup
        assert "invalid IPSEC" not in ka.log() and "already processed" not in ka.log()


def test_ah_wrong_password_splits_the_pair_and_counts_auth_drops(topology, tmp_path):
    a, b = _pair(topology)
    chime = Daemon(a, "chime-ha", conf(state="BACKUP", priority=200), tmp_path, control=True)
    ka = Daemon(b, "keepalived", conf(state="BACKUP", priority=100, password="wrong!"), tmp_path)
    with stopped_at_end(chime, ka):
        ka.start()
        chime.start()
        # Each drops the other's adverts, so both claim the VIP: the check has teeth on both sides.
        wait_until(lambda: sorted(holders([a, b], VIP)) == ["a", "b"], 12, "both nodes master")
        # (keepalived 2.2.7, as master, stops advertising once it has failed to verify a
        # higher-priority advert, so chime-ha sees one or a few of its adverts, not one a second.)
        wait_until(lambda: chime.status()["instances"]["VI_AH"]["drops_by_reason"].get("auth", 0) >= 1,
                   5, "chime-ha counting keepalived's adverts as auth drops")
        assert chime.status()["instances"]["VI_AH"]["adverts_received"] == 0
        wait_until(lambda: "invalid IPSEC HMAC-MD5" in ka.log(), 5, "keepalived refusing chime-ha's ICV")
