"""Checkers built from a parsed keepalived.conf (chimeha.config), run against real servers."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from chimeha.check import RealServerMonitor, resolve_timing, target_for

config = pytest.importorskip("chimeha.config")


def load(text: str):
    res = config.loads(text, "test.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    return res.config


def test_timing_inherited_through_the_parsed_model():
    cfg = load("""
virtual_server 192.168.231.100 80 {
    delay_loop 6
    connect_timeout 4
    retry 2
    virtualhost vs.test
    real_server 192.168.231.11 80 {
        delay_before_retry 0.5
        virtualhost rs.test
        TCP_CHECK { connect_timeout 2 }
        HTTP_GET { url { path / } }
        DNS_CHECK { retry 7 }
        MISC_CHECK { misc_path "/bin/true" }
    }
    real_server 192.168.231.12 80 {
        TCP_CHECK { }
    }
}
""")
    vs = cfg.virtual_servers[0]
    rs1, rs2 = vs.real_servers
    tcp, http, dns, misc = (resolve_timing(c, rs1, vs) for c in rs1.checkers)
    assert (tcp.connect_timeout, tcp.retry, tcp.delay_before_retry, tcp.delay_loop, tcp.warmup) == (2, 2, 0.5, 6, 6)
    assert (http.connect_timeout, http.delay_before_retry) == (4, 0.5)
    assert dns.retry == 7
    assert misc.retry == 2              # explicit on the virtual server beats MISC_CHECK's default 0
    t2 = resolve_timing(rs2.checkers[0], rs2, vs)
    assert (t2.delay_before_retry, t2.connect_timeout) == (1.0, 4)
    assert target_for(rs1, vs).virtualhost == "rs.test"
    assert target_for(rs2, vs).virtualhost == "vs.test"


async def test_monitor_from_config_against_real_servers(tmp_path, wait_for):
    body = b"portal ok"

    async def http(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + body)
        writer.close()

    web = await asyncio.start_server(http, "127.0.0.1", 0)
    port = web.sockets[0].getsockname()[1]
    maint = tmp_path / "maint"
    maint.write_text("0\n")
    cfg = load(f"""
track_file maint {{
    file {maint}
    weight 0
}}
virtual_server 127.0.0.1 8080 {{
    delay_loop 0.05
    warmup 0
    retry 0
    real_server 127.0.0.1 {port} {{
        weight 4
        TCP_CHECK {{ }}
        HTTP_GET {{
            url {{
                path /
                digest {hashlib.md5(body).hexdigest()}
            }}
            delay_before_retry 0.05
        }}
        FILE_CHECK {{ track_file maint }}
    }}
}}
""")
    vs = cfg.virtual_servers[0]
    changes = []
    mon = RealServerMonitor.from_config(vs.real_servers[0], vs, lambda up, w, why: changes.append((up, w, why)),
                                        track_files=cfg.track_files)
    assert mon.up and mon.weight == 4
    mon.start()
    try:
        await wait_for(lambda: all(r.schedule.probes >= 3 for r in mon.runners))
        assert changes == []
        maint.write_text("1\n")                      # maintenance flag: down via FILE_CHECK only
        await wait_for(lambda: changes)
        assert changes[-1][0] is False and "FILE_CHECK" in changes[-1][2]
        maint.write_text("0\n")
        await wait_for(lambda: mon.up)
        web.close()
        await web.wait_closed()                      # real server gone: TCP and HTTP fail
        await wait_for(lambda: not mon.up)
        await wait_for(lambda: not mon.runners[0].up and not mon.runners[1].up)
        assert mon.runners[2].up                     # the file is still fine
        assert not mon.up
    finally:
        await mon.stop()
        web.close()


def test_seed_active_active_timing():
    """The seed's TCP_CHECKs: delay_loop 6 from the virtual server, connect_timeout 3, defaults otherwise."""
    import pathlib
    seed = pathlib.Path(__file__).resolve().parents[2] / "examples" / "seed" / "active-active-server1.conf"
    res = config.load(str(seed))
    assert res.ok
    timings = {resolve_timing(c, rs, vs) for vs in res.config.virtual_servers
               for rs in vs.real_servers for c in rs.checkers}
    assert len(timings) == 1
    (t,) = timings
    assert (t.delay_loop, t.connect_timeout, t.retry, t.delay_before_retry, t.warmup, t.alpha) == \
        (6.0, 3.0, 1, 1.0, 6.0, False)
    targets = {(target_for(rs, vs).address, target_for(rs, vs).port) for vs in res.config.virtual_servers
               for rs in vs.real_servers}
    assert ("192.168.231.11", 8033) in targets and ("192.168.231.12", 8802) in targets
