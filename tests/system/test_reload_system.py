"""SIGHUP with a real chime-ha daemon in namespaces, a real backup watching (issue 9 item 3).

* a reload that cannot run (a new instance on a missing interface) is refused
  and changes nothing: the instance it would have dropped keeps MASTER and its
  VIP, the peer never takes it;
* a FIFO in the configuration (as an include, or as the file itself) never
  hangs the daemon: the reload answers quickly with a message, adverts go on,
  SIGTERM still stops it;
* an 8 MB configuration (comments, or 40,000 unused vrrp_script blocks) is
  read off the event loop: the master keeps advertising, the backup never
  takes over.

VRRPv3 with advert_int 0.1: a master that misses about 0.36 s of adverts loses
its VIP to the backup, so a stalled event loop shows at once.
"""

from __future__ import annotations

import textwrap
import time

import pytest

from chalab import Daemon, holders, settle_on, wait_until

pytestmark = pytest.mark.system

VIPS = {"VI_1": "10.9.3.100", "VI_2": "10.9.3.101", "VI_3": "10.9.3.102"}
VRIDS = {"VI_1": 31, "VI_2": 32, "VI_3": 33}
HOLD = 1.0  # about three Master_Down_Intervals


def inst(name: str, state: str, priority: int, interface: str = "eth0") -> str:
    return textwrap.dedent(f"""\
        vrrp_instance {name} {{
            state {state}
            interface {interface}
            virtual_router_id {VRIDS[name]}
            priority {priority}
            advert_int 0.1
            version 3
            virtual_ipaddress {{
                {VIPS[name]}/24
            }}
        }}
        """)


@pytest.fixture
def pair(topology, tmp_path):
    """Nodes a (MASTER, priority 200) and b (BACKUP, 100) running VI_1 and VI_2."""
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "10.9.3.11/24")
    b = add_node(topology, "b", "10.9.3.12/24")
    da = Daemon(a, "chime-ha", inst("VI_1", "MASTER", 200) + inst("VI_2", "MASTER", 200), tmp_path,
                control=True)
    db = Daemon(b, "chime-ha", inst("VI_1", "BACKUP", 100) + inst("VI_2", "BACKUP", 100), tmp_path,
                control=True)
    try:
        # b first, until it is MASTER alone; then a preempts it. Started together, both
        # Master_Down timers (0.3 s) could expire within a few ms of each other and the
        # brief double master of the start would be taken for a move after settling.
        db.start()
        for name in ("VI_1", "VI_2"):
            wait_until(lambda name=name: holders([a, b], VIPS[name]) == ["b"], 10, f"{name} on b alone")
        da.start()
        for name in ("VI_1", "VI_2"):
            settle_on([a, b], VIPS[name], "a", timeout=10, hold=0.3)
        yield a, b, da, db
    finally:
        da.stop()
        db.stop()
        print("--- a ---\n" + da.log()[-6000:])  # shown only when the test failed
        print("--- b ---\n" + db.log()[-6000:])


def log_since(d: Daemon, mark: int) -> str:
    return d.log()[mark:]


class BackupWatch:
    """What the peer said and counted when the test began; it must stay BACKUP from then on."""

    def __init__(self, db: Daemon):
        self.db = db
        self.mark = len(db.log())
        self.became = {n: st["became_master"] for n, st in db.status()["instances"].items()}

    def assert_never_took_over(self) -> None:
        assert "-> MASTER" not in log_since(self.db, self.mark), "the backup took over at some point"
        for name, st in self.db.status()["instances"].items():
            assert st["state"] == "BACKUP" and st["became_master"] == self.became[name], (name, st)


def test_refused_reload_keeps_the_dropped_instance_master(pair):
    a, b, da, db = pair
    watch = BackupWatch(db)
    before = da.status()["instances"]["VI_2"]
    mark = len(da.log())
    # Drops VI_2, adds VI_3 on an interface the node does not have.
    a.write_file(da.conf, inst("VI_1", "MASTER", 200) + inst("VI_3", "MASTER", 200, interface="nosuch0"))
    da.signal("HUP")
    wait_until(lambda: "reload failed" in log_since(da, mark), 10, "the refusal in a's log")
    refusal = log_since(da, mark)
    assert "interface nosuch0 does not exist" in refusal
    assert f"{da.conf}:" in refusal  # FILE:LINE of the instance that cannot run
    assert "Traceback" not in refusal

    for name in ("VI_1", "VI_2"):
        settle_on([a, b], VIPS[name], "a", timeout=1, hold=HOLD)
    assert VIPS["VI_3"] not in a.addresses_on()
    st = da.status()
    assert st["node"]["reloads"] == 0
    vi2 = st["instances"]["VI_2"]
    assert vi2["state"] == "MASTER" and vi2["became_master"] == before["became_master"]
    assert vi2["priority_zero_sent"] == 0  # VI_2 was never shut down, not even for a moment
    assert vi2["adverts_sent"] > before["adverts_sent"]  # and it still advertises
    assert "VI_3" not in st["instances"]
    assert "VI_2: MASTER -> " not in log_since(da, mark)
    watch.assert_never_took_over()


@pytest.mark.parametrize("where", ["include", "main file"])
def test_fifo_in_the_configuration_never_hangs_the_daemon(pair, where):
    a, b, da, db = pair
    watch = BackupWatch(db)
    conf = inst("VI_1", "MASTER", 200) + inst("VI_2", "MASTER", 200)
    mark = len(da.log())
    if where == "include":
        a.run(["mkfifo", "/run/some.fifo"])
        a.write_file(da.conf, conf + "include /run/some.fifo\n")
    else:
        a.run(["rm", "-f", da.conf])
        a.run(["mkfifo", da.conf])
    received = db.status()["instances"]["VI_1"]["adverts_received"]
    t0 = time.monotonic()
    da.signal("HUP")
    # Quickly, and with a message: not the 30 s load timeout, not a hang.
    wait_until(lambda: "not-regular-file" in log_since(da, mark), 5, "the FIFO reported in a's log")
    took = time.monotonic() - t0
    said = log_since(da, mark)
    assert "a FIFO" in said and "Traceback" not in said
    if where == "include":
        # skipped as keepalived skips it (warning at the include's line); the rest is applied
        assert f"{da.conf}:{conf.count(chr(10)) + 1}: warning" in said
        wait_until(lambda: da.status()["node"]["reloads"] == 1, 5, "the reload applied without the FIFO")
    else:
        assert "reload refused" in said
        assert da.status()["node"]["reloads"] == 0
    print(f"FIFO ({where}) reported {took:.2f} s after SIGHUP")

    for name in ("VI_1", "VI_2"):
        settle_on([a, b], VIPS[name], "a", timeout=1, hold=HOLD)
    assert db.status()["instances"]["VI_1"]["adverts_received"] > received  # a kept advertising
    watch.assert_never_took_over()

    # SIGTERM still works: priority 0, the daemon exits on its own, b takes over.
    da.signal("TERM")
    wait_until(lambda: da.proc.poll() is not None, 10, "a's daemon to exit after SIGTERM")
    assert "stopped" in da.log()
    for name in ("VI_1", "VI_2"):
        settle_on([a, b], VIPS[name], "b", timeout=3, hold=0.3)


def _padding(kind: str, size: int) -> str:
    if kind == "comments":
        line = "# " + "x" * 77 + "\n"
        return line * (size // len(line))
    # 4-line blocks keep 8 MB under the reader's 200,000-line cap
    block = '\nvrrp_script unused_{i} {{\n    script "/bin/true ' + "a" * 150 + '"\n    interval 2\n}}'
    out, total, i = [], 0, 0
    while total < size:
        s = block.format(i=i)
        out.append(s)
        total += len(s)
        i += 1
    return "".join(out) + "\n"


@pytest.mark.parametrize("kind", ["comments", "unused blocks"])
def test_8mb_configuration_reloads_without_a_takeover(pair, kind):
    a, b, da, db = pair
    watch = BackupWatch(db)
    conf = inst("VI_1", "MASTER", 200) + inst("VI_2", "MASTER", 200)
    big = conf + _padding(kind, 8 * 1024 * 1024)
    assert len(big) >= 8 * 1024 * 1024
    a.write_file(da.conf, big)
    mark = len(da.log())
    sent = da.status()["instances"]["VI_1"]["adverts_sent"]
    t0 = time.monotonic()
    da.signal("HUP")

    # While the file is read, the VIPs never leave a (sampled continuously) ...
    samples = 0
    while "reloaded:" not in log_since(da, mark):
        assert "reload refused" not in log_since(da, mark) and "reload failed" not in log_since(da, mark), \
            log_since(da, mark)
        assert time.monotonic() - t0 < 60, "no reload outcome within 60 s"
        for name in ("VI_1", "VI_2"):
            now = holders([a, b], VIPS[name])
            assert now == ["a"], f"{VIPS[name]} on {now} {time.monotonic() - t0:.2f} s after SIGHUP"
        samples += 1
    took = time.monotonic() - t0
    print(f"8 MB ({kind}) reloaded {took:.2f} s after SIGHUP; {samples} VIP samples")
    assert samples >= 1

    # ... and the backup never took over: both instances unchanged, b BACKUP all along.
    for name in ("VI_1", "VI_2"):
        settle_on([a, b], VIPS[name], "a", timeout=1, hold=0.5)
    st = da.status()
    assert st["node"]["reloads"] == 1
    assert all(s["state"] == "MASTER" and s["became_master"] == 1 for s in st["instances"].values()), st
    assert st["instances"]["VI_1"]["adverts_sent"] > sent
    watch.assert_never_took_over()
