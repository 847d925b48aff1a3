"""runtime/lvs_manager.py: VIP ownership, reload, coalescing, backend failures, drift repair, quorum scripts.

An in-memory backend stands in for nft (tests/lvs/test_manager.py covers the operation lists).
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from rtfakes import until

from chimeha.config import loads
from chimeha.lvs.backends.base import BackendError
from chimeha.lvs.desired import rs_id, vs_id
from chimeha.lvs.reconcile import apply_to
from chimeha.lvs.types import DesiredState, LvsConfigError
from chimeha.runtime.lvs_manager import LvsManager

VIP = "192.168.232.10"


def conf(extra_vs="", rs=(".11",), vs_port=80, more=""):
    servers = "".join(f" real_server 192.168.232{r} 8080 {{\n  weight 1\n }}\n" for r in rs)
    return (f"vrrp_instance VI_1 {{\n interface lo\n virtual_router_id 51\n virtual_ipaddress {{\n  {VIP}\n }}\n}}\n"
            f"virtual_server {VIP} {vs_port} {{\n lb_algo rr\n lb_kind NAT\n protocol TCP\n{extra_vs}{servers}}}\n"
            + more)


def cfg_of(text):
    res = loads(text, "lvs.conf")
    assert res.config is not None and not [d for d in res.diagnostics if d.severity == "error"], \
        [str(d) for d in res.diagnostics]
    return res.config


class Memory:
    """A Backend (lvs/backends/base.py) in memory; can be slowed, broken or flushed from outside."""

    name = "nft"

    def __init__(self, delay=0.0):
        self.state = DesiredState()
        self.drift = None
        self.batches: list[list] = []
        self.delay = delay
        self.read_error: str | None = None
        self.apply_error: str | None = None
        self.closed = False

    def unsupported(self, service):
        return None

    async def preflight(self):
        return None

    async def read_actual(self):
        if self.read_error:
            raise BackendError(self.read_error)
        return self.state

    async def apply(self, ops):
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.apply_error:
            raise BackendError(self.apply_error)
        self.batches.append(list(ops))
        self.state = apply_to(self.state, list(ops))

    async def verify(self):
        return True

    async def close(self):
        self.closed = True
        self.state = DesiredState()

    def stats(self):
        return {}


def forwarded(mem: Memory) -> dict:
    return {str(k): sorted((d.address, d.port, d.weight) for d in s.destinations) for k, s in mem.state.services.items()}


async def manager(text, mem=None, **kw):
    mem = mem or Memory()
    mgr = LvsManager(cfg_of(text), "nft", health_checks=False, backends={"nft": mem}, **kw)
    await mgr.start()
    return mgr, mem


def test_an_unknown_dataplane_is_a_config_error_naming_the_choices():
    with pytest.raises(LvsConfigError, match="--dataplane must be one of .*not 'kernel'"):
        LvsManager(cfg_of(conf()), "kernel")


async def test_forwarding_follows_vip_ownership():
    mgr, mem = await manager(conf())
    try:
        assert forwarded(mem) == {}  # owns nothing yet
        mgr.on_vips_changed({VIP})
        await mgr.reconcile_now()
        assert forwarded(mem) == {f"TCP {VIP}:80": [("192.168.232.11", 8080, 1)]}
        mgr.on_vips_changed({"10.1.1.1"})  # some other VIP: this service is the peer's
        await mgr.reconcile_now()
        assert forwarded(mem) == {}
        mgr.on_vips_changed(None)  # no VRRP gating at all
        await mgr.reconcile_now()
        assert list(forwarded(mem)) == [f"TCP {VIP}:80"]
    finally:
        await mgr.stop()
    assert mem.closed and forwarded(mem) == {}


async def test_a_vip_change_alone_reprograms_the_data_plane():
    # The daemon's executor only calls on_vips_changed (from the VRRP loop, no await): the
    # manager's own task must pick it up.
    mgr, mem = await manager(conf())
    try:
        mgr.on_vips_changed({VIP})
        await until(lambda: list(forwarded(mem)) == [f"TCP {VIP}:80"], 3, "forwarding after the VIP came")
        mgr.on_vips_changed(set())
        await until(lambda: forwarded(mem) == {}, 3, "no forwarding after the VIP left")
    finally:
        await mgr.stop()


async def test_ownership_flapping_during_a_slow_apply_is_coalesced_and_ends_right():
    mgr, mem = await manager(conf(), Memory(delay=0.05))
    try:
        before = mgr.reconciles
        mgr.on_vips_changed({VIP})
        await asyncio.sleep(0.01)  # that pass is now inside its slow apply
        for i in range(20):  # flapping while it runs
            mgr.on_vips_changed(set() if i % 2 == 0 else {VIP})
        await mgr.reconcile_now()
        assert forwarded(mem) == {f"TCP {VIP}:80": [("192.168.232.11", 8080, 1)]}
        assert mgr.reconciles - before <= 3  # 21 triggers: the running pass and one more (plus a verify)
    finally:
        await mgr.stop()


async def test_reload_applies_the_new_real_servers_and_keeps_ownership():
    mgr, mem = await manager(conf(rs=(".11", ".12")))
    try:
        mgr.on_vips_changed({VIP})
        await mgr.reconcile_now()
        await mgr.reload(cfg_of(conf(rs=(".12", ".13"))))
        assert forwarded(mem) == {f"TCP {VIP}:80": [("192.168.232.12", 8080, 1), ("192.168.232.13", 8080, 1)]}
        await mgr.reload(cfg_of(conf(vs_port=81)))  # the service itself moved
        assert list(forwarded(mem)) == [f"TCP {VIP}:81"]
    finally:
        await mgr.stop()


async def test_a_backend_that_cannot_be_read_is_reported_and_retried(caplog):
    mem = Memory()
    mem.read_error = "nft list table: permission denied"
    with caplog.at_level(logging.ERROR, logger="chimeha.lvs"):
        mgr, _ = await manager(conf(), mem)
    try:
        mgr.on_vips_changed({VIP})
        await mgr.reconcile_now()
        assert "nft list table: permission denied" in mgr.snapshot()["errors"]
        assert "reading the nft data plane" in caplog.text and forwarded(mem) == {}
        mem.read_error = None
        mgr.set_health("nothing", True)  # any trigger: the next pass succeeds
        await mgr.reconcile_now()
        assert mgr.snapshot()["errors"] == [] and list(forwarded(mem)) == [f"TCP {VIP}:80"]
    finally:
        await mgr.stop()


async def test_an_apply_failure_is_reported_and_vrrp_is_not_disturbed(caplog):
    mem = Memory()
    mem.apply_error = "nft: Could not process rule"
    mgr, _ = await manager(conf(), mem)
    try:
        with caplog.at_level(logging.ERROR, logger="chimeha.lvs"):
            mgr.on_vips_changed({VIP})  # a plain call from the VRRP loop: never raises
            await mgr.reconcile_now()
        assert mgr.errors == ["nft: Could not process rule"] and "nft data plane: nft: Could not" in caplog.text
    finally:
        await mgr.stop()


async def test_an_outside_flush_is_repaired_within_the_verify_interval(caplog):
    mgr, mem = await manager(conf(), verify_interval=0.1)
    try:
        mgr.on_vips_changed({VIP})
        await mgr.reconcile_now()
        want = forwarded(mem)
        mem.state, mem.drift = DesiredState(), "table chimeha missing"  # `nft flush ruleset` by someone
        with caplog.at_level(logging.WARNING, logger="chimeha.lvs"):
            await until(lambda: forwarded(mem) == want, 3, "the repair")
        assert mgr.repairs >= 1 and "drifted (table chimeha missing); repairing" in caplog.text
    finally:
        await mgr.stop()


async def test_quorum_scripts_run_on_quorum_changes_and_omega_at_stop(tmp_path):
    log = tmp_path / "quorum"
    extra = (f' quorum 2\n quorum_up "/bin/sh -c \'echo up >> {log}\'"\n'
             f' quorum_down "/bin/sh -c \'echo down >> {log}\'"\n omega\n')
    text = conf(extra, rs=(".11", ".12"))
    mgr, mem = await manager(text)
    cfg = mgr.config
    vs = cfg.virtual_servers[0]
    try:
        mgr.on_vips_changed({VIP})
        await mgr.reconcile_now()
        assert mgr.snapshot()["virtual_servers"][0]["quorum"] is True
        mgr.set_health(rs_id(vs, vs.real_servers[0]), False)  # 1 of 2 up < quorum 2
        await mgr.reconcile_now()
        await until(lambda: log.exists() and log.read_text() == "down\n", 5, "quorum_down")
        mgr.set_health(rs_id(vs, vs.real_servers[0]), True)
        await mgr.reconcile_now()
        await until(lambda: log.read_text() == "down\nup\n", 5, "quorum_up")
    finally:
        await mgr.stop()  # omega: quorum held at stop -> quorum_down once more
    assert log.read_text() == "down\nup\ndown\n"


async def test_snapshot_reports_health_weight_and_service_state():
    mgr, mem = await manager(conf(rs=(".11", ".12")))
    vs = mgr.config.virtual_servers[0]
    try:
        mgr.on_vips_changed({VIP})
        mgr.set_health(rs_id(vs, vs.real_servers[1]), False)
        await mgr.reconcile_now()
        snap = mgr.snapshot()
        v = snap["virtual_servers"][0]
        assert (v["virtual_server"], v["address"], v["port"]) == (vs_id(vs), VIP, 80)
        assert (v["dataplane"], v["active"], v["sorry_server"]) == ("nft", True, False)
        assert [(r["address"], r["healthy"], r["in_service"]) for r in v["real_servers"]] == [
            ("192.168.232.11", True, True), ("192.168.232.12", False, False)]
        assert snap["dataplane"] == "nft" and snap["reconciles"] == mgr.reconciles
        assert forwarded(mem) == {f"TCP {VIP}:80": [("192.168.232.11", 8080, 1)]}  # the down one is out
    finally:
        await mgr.stop()


async def test_quorum_and_omega_stop_feed_the_mail_alerts():
    from types import SimpleNamespace

    text = conf(" quorum 2\n hysteresis 0\n omega\n smtp_alert\n", rs=(".11", ".12"))
    mail = []
    alerts = SimpleNamespace(quorum=lambda vs, up, w: mail.append(("quorum", up, w)),
                             shutdown=lambda vs, alive: mail.append(("shutdown", [r.address for r in alive])),
                             checker=lambda *a: None)
    mem = Memory()
    mgr = LvsManager(cfg_of(text), "nft", health_checks=False, backends={"nft": mem})
    mgr.alerts = alerts
    await mgr.start()
    vs = mgr.config.virtual_servers[0]
    try:
        mgr.on_vips_changed({VIP})
        await mgr.reconcile_now()
        mgr.set_health(rs_id(vs, vs.real_servers[0]), False)
        await mgr.reconcile_now()
        await until(lambda: mail, 5, "quorum lost")
        assert mail == [("quorum", False, 1)]  # live weight 1 < quorum 2
    finally:
        await mgr.stop()
    assert mail[-1] == ("shutdown", ["192.168.232.12"])  # omega: the live real server's mail at stop
