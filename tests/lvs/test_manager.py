"""LvsManager glue without a kernel: a recording backend stands in for nft/proxy."""

from __future__ import annotations

from chimeha.config import loads
from chimeha.lvs.desired import rs_id
from chimeha.lvs.reconcile import AddDest, AddService, DelDest, DelService, EditDest, apply_to
from chimeha.lvs.types import DesiredState
from chimeha.runtime.lvs_manager import LvsManager

CONF = """
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.168.231.10
    }
}
virtual_server 192.168.231.10 8801 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    inhibit_on_failure
    real_server 192.168.231.11 8801 {
        weight 2
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 192.168.231.12 8801 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
virtual_server 192.168.231.10 8802 {
    lb_algo wlc
    lb_kind DR
    protocol TCP
    real_server 192.168.231.11 8802 {
    }
}
"""


class Recorder:
    """An in-memory backend with the Backend protocol (see lvs/backends/base.py)."""

    name = "nft"
    drift = None

    def __init__(self):
        self.state = DesiredState()
        self.batches = []
        self.closed = False

    async def preflight(self):
        return None

    def unsupported(self, service):
        return None

    async def apply(self, ops):
        self.batches.append(list(ops))
        self.state = apply_to(self.state, list(ops))

    async def read_actual(self):
        return self.state

    async def verify(self):
        return True

    async def close(self):
        self.closed = True
        self.state = DesiredState()

    def stats(self):
        return {}


async def test_manager_follows_vips_health_and_reports():
    cfg = loads(CONF).config
    rec = Recorder()
    mgr = LvsManager(cfg, "nft", health_checks=False, backends={"nft": rec})
    await mgr.start()
    assert rec.batches == []  # backup: nothing to forward
    snap = mgr.snapshot()
    assert snap["virtual_servers"][0]["state"] == "standby: VIP held by another node"
    mgr.on_vips_changed({"192.168.231.10"})
    await mgr.reconcile_now()
    assert [type(o) for o in rec.batches[-1]] == [AddService, AddDest, AddDest]
    # DR without IPVS is a configuration error naming the service, not a silent NAT
    assert len(mgr.errors) == 1 and "TCP 192.168.231.10:8802: lb_kind DR needs IPVS" in mgr.errors[0]
    vs = cfg.virtual_servers[0]
    mgr.set_health(rs_id(vs, vs.real_servers[1]), False)
    await mgr.reconcile_now()
    assert [(type(o), o.dest.address, o.dest.weight) for o in rec.batches[-1]] == [
        (EditDest, "192.168.231.12", 0)]  # inhibit_on_failure: weight 0, not removed
    snap = mgr.snapshot()["virtual_servers"][0]
    assert snap["dataplane"] == "nft"
    assert [(r["healthy"], r["weight"], r["in_service"]) for r in snap["real_servers"]] == [
        (True, 2, True), (False, 0, False)]
    assert mgr.snapshot()["virtual_servers"][1]["dataplane"] is None
    mgr.on_vips_changed(set())
    await mgr.reconcile_now()
    assert [type(o) for o in rec.batches[-1]] == [DelService]
    n = len(rec.batches)
    mgr.on_vips_changed(set())
    await mgr.reconcile_now()
    assert len(rec.batches) == n  # nothing changed: no operations
    await mgr.stop()
    assert rec.closed


async def test_reload_applies_only_the_difference():
    cfg = loads(CONF).config
    rec = Recorder()
    mgr = LvsManager(cfg, "nft", health_checks=False, backends={"nft": rec})
    mgr.on_vips_changed(None)
    await mgr.start()
    new = loads(CONF.replace("real_server 192.168.231.12 8801", "real_server 192.168.231.13 8801")).config
    await mgr.reload(new)
    assert [(type(o), o.dest.address) for o in rec.batches[-1]] == [(DelDest, "192.168.231.12"),
                                                                     (AddDest, "192.168.231.13")]
    await mgr.stop()


LOOP_CONF = """
vrrp_instance VI_1 {{
    interface lo
    virtual_router_id 51
    virtual_ipaddress {{
        127.0.0.2
    }}
}}
virtual_server 127.0.0.2 {vport} {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    {suspend}
    real_server 127.0.0.1 {up} {{
        TCP_CHECK {{
            connect_timeout 1
            retry 0
            warmup 0
        }}
    }}
    real_server 127.0.0.1 {down} {{
        TCP_CHECK {{
            connect_timeout 1
            retry 0
            warmup 0
        }}
    }}
}}
"""


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait(pred, timeout=10.0):
    import asyncio
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred() and loop.time() < end:
        await asyncio.sleep(0.05)
    return pred()


async def test_real_checkers_feed_desired_state_and_ha_suspend():
    """TCP_CHECK on loopback: a closed port goes down and leaves the data plane; ha_suspend
    keeps checkers off while the VIP is elsewhere."""
    import asyncio

    up_srv = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    up = up_srv.sockets[0].getsockname()[1]
    down = _free_port()  # nothing listens there
    cfg = loads(LOOP_CONF.format(vport=_free_port(), up=up, down=down, suspend="ha_suspend")).config
    rec = Recorder()
    mgr = LvsManager(cfg, "nft", backends={"nft": rec})
    try:
        await mgr.start()
        assert mgr._monitors == {}  # backup + ha_suspend: nothing is checked
        mgr.on_vips_changed({"127.0.0.2"})
        assert len(mgr._monitors) == 2

        def healthy():
            return [r["healthy"] for r in mgr.snapshot()["virtual_servers"][0]["real_servers"]]

        assert await _wait(lambda: healthy() == [True, False])
        await mgr.reconcile_now()
        assert [d.port for d in next(iter(rec.state.services.values())).destinations] == [up]
        mgr.on_vips_changed(set())
        assert mgr._monitors == {}
    finally:
        await mgr.stop()
        up_srv.close()


async def test_dataplane_none_runs_health_checks_and_reports_without_forwarding():
    """--dataplane none: checkers run and status shows them; no backend is created, nothing forwarded."""
    import asyncio
    import socket

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    up_port = server.sockets[0].getsockname()[1]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    down_port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    conf = "".join(
        f"virtual_server 127.0.0.1 {p} {{\n  delay_loop 1\n  lb_algo rr\n  protocol TCP\n"
        f"  real_server 127.0.0.1 {p} {{\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 0\n    }}\n  }}\n}}\n"
        for p in (up_port, down_port))
    mgr = LvsManager(loads(conf).config, "none")
    try:
        await mgr.start()
        mgr.on_vips_changed(None)

        def healthy():
            return [r["healthy"] for v in mgr.snapshot()["virtual_servers"] for r in v["real_servers"]]
        for _ in range(100):
            if healthy() == [True, False]:
                break
            await asyncio.sleep(0.05)
        snap = mgr.snapshot()
        assert healthy() == [True, False]
        assert "refused" in snap["virtual_servers"][1]["real_servers"][0]["detail"]
        assert [v["dataplane"] for v in snap["virtual_servers"]] == [None, None]
        assert [v["active"] for v in snap["virtual_servers"]] == [False, False]
        assert all("--dataplane none: health checks and status only" in v["why"] for v in snap["virtual_servers"])
        assert mgr._backends == {} and snap["errors"] == []
    finally:
        await mgr.stop()
        server.close()
