"""BfdManager: session changes -> track_bfd weights/FAULT and the early takeover (no sockets, fake clock)."""

from __future__ import annotations

import pytest

from chimeha import config
from chimeha.bfd.packet import Diag, SessionState
from chimeha.bfd.session import SessionChanged
from chimeha.check.bfd import STATES
from chimeha.runtime.bfd import BfdManager, BfdService, specs_from_config
from chimeha.runtime.reload import build_specs
from chimeha.vrrp.events import State
from chimeha.vrrp.node import VrrpNode
from chimeha.vrrp.packet import Advertisement

MASTER, ME = "192.168.231.11", "192.168.231.12"
CONF = f"""
bfd_instance peer {{
    neighbor_ip {MASTER}
    source_ip {ME}
    min_rx 50
    min_tx 50
    multiplier 3
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface ens160
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {{
        192.168.231.10
    }}
    track_bfd {{
        peer weight 60 reverse
    }}
}}
vrrp_instance VI_OTHER {{
    state BACKUP
    interface ens160
    virtual_router_id 52
    priority 150
    advert_int 1
    virtual_ipaddress {{
        192.168.231.20
    }}
}}
"""


class FakeDaemon:
    def __init__(self, cfg):
        self.config = cfg
        specs, groups = build_specs(cfg)
        specs = [s.__class__(**{**s.__dict__, "primary_address": ME}) for s in specs]
        self.node = VrrpNode(specs, groups)
        self.t = 0.0
        self.inputs = 0
        self.actions = []

    def now(self):
        return self.t

    def after_input(self):
        self.inputs += 1
        self.actions.extend(self.node.pop_actions())


def change(old, new, diag=Diag.DETECT_EXPIRED, reason="control detection time expired, 150 ms"):
    return SessionChanged("peer", MASTER, old, new, int(diag), reason, 0.0, 0.15)


@pytest.fixture
def wired():
    res = config.loads(CONF, "k.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    d = FakeDaemon(res.config)
    d.node.start(0.0)
    for name, vrid in (("VI_1", 51), ("VI_OTHER", 52)):
        adv = Advertisement(2, vrid, 200, 1.0, ("192.168.231.10",), MASTER)
        d.node.instance(name).handle_advert(adv, 0.5)
    d.node.pop_actions()
    mgr = BfdManager(d, BfdService(specs_from_config(res.config)))
    yield d, mgr
    STATES.clear()


def test_specs_from_config_in_seconds():
    res = config.loads(CONF, "k.conf")
    (spec,) = specs_from_config(res.config)
    assert (spec.neighbor, spec.source, spec.min_tx, spec.min_rx, spec.multiplier, spec.ttl) == \
        (MASTER, ME, 0.05, 0.05, 3, 255)


def test_up_then_down_shifts_priority_and_ends_the_wait(wired):
    d, mgr = wired
    vi = d.node.instance("VI_1")
    assert vi.priority == 150  # starts Down (keepalived); "weight 60 reverse" takes 60 off while Up
    d.t = 1.0
    mgr.changed(change(SessionState.INIT, SessionState.UP, Diag.NONE, "neighbor is Up"))
    assert vi.priority == 90
    d.t = 2.0
    before = d.node.instance("VI_OTHER").get_timer()
    mgr.changed(change(SessionState.UP, SessionState.DOWN))
    assert vi.priority == 150
    # Skew_Time of the new priority, not Master_Down_Interval (3 s + skew)
    assert d.node.get_timer() == pytest.approx(2.0 + (256 - 150) / 256)
    assert d.node.instance("VI_OTHER").get_timer() == before  # it does not track the session
    assert mgr.takeovers == 1
    d.node.handle_timer(2.0 + (256 - 150) / 256)
    d.after_input()
    assert vi.state is State.MASTER
    took = [a for a in d.actions if getattr(a, "new", None) is State.MASTER]
    assert took and took[0].reason == f"BFD to {MASTER} down: control detection time expired, 150 ms"


def test_admin_down_from_the_peer_is_not_a_failure(wired):
    d, mgr = wired
    vi = d.node.instance("VI_1")
    mgr.changed(change(SessionState.INIT, SessionState.UP, Diag.NONE, "neighbor is Up"))
    sess = mgr.service.node.sessions["peer"]
    sess.remote_state = SessionState.ADMIN_DOWN
    timer = vi.get_timer()
    mgr.changed(change(SessionState.UP, SessionState.DOWN, Diag.NEIGHBOR_DOWN,
                       "neighbor signaled session down (administratively down)"))
    assert vi.priority == 150 and vi.get_timer() == timer and mgr.takeovers == 0


def test_a_down_that_was_never_up_changes_no_timer(wired):
    d, mgr = wired
    vi = d.node.instance("VI_1")
    timer = vi.get_timer()
    mgr.changed(change(SessionState.INIT, SessionState.DOWN))
    assert vi.get_timer() == timer and mgr.takeovers == 0


def test_unweighted_track_bfd_is_fault_while_not_up():
    text = CONF.replace("        peer weight 60 reverse", "        peer")
    res = config.loads(text, "k.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    d = FakeDaemon(res.config)
    d.node.start(0.0)
    mgr = BfdManager(d, BfdService(specs_from_config(res.config)))
    vi = d.node.instance("VI_1")
    assert vi.state is State.FAULT  # the session starts Down, as in keepalived
    d.t = 1.0
    mgr.changed(change(SessionState.INIT, SessionState.UP, Diag.NONE, "neighbor is Up"))
    assert vi.state is State.BACKUP
    d.t = 2.0
    mgr.changed(change(SessionState.UP, SessionState.DOWN))
    d.after_input()
    assert vi.state is State.FAULT
    faults = [a for a in d.actions if getattr(a, "new", None) is State.FAULT]
    assert "track_bfd peer to 192.168.231.11 down: control detection time expired, 150 ms" in faults[-1].reason
    STATES.clear()


def test_resync_gives_rebuilt_instances_the_current_state(wired):
    d, mgr = wired
    sess = mgr.service.node.sessions["peer"]
    sess.state = SessionState.UP  # as if the session had come Up on the wire
    mgr.changed(change(SessionState.INIT, SessionState.UP, Diag.NONE, "neighbor is Up"))
    assert d.node.instance("VI_1").priority == 90
    # a reload rebuilt the instance: it starts with the session Down (150) until told
    d.node = VrrpNode(d.node.specs(), d.node.groups())
    d.node.start(3.0)
    assert d.node.instance("VI_1").priority == 150
    mgr.resync()
    assert d.node.instance("VI_1").priority == 90
