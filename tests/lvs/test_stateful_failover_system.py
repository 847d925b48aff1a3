"""Stateful director failover (issue 11 item 2): established connections survive.

The seed's active-active cluster (server1 holds both VIPs and balances over
both servers with the nft data plane), the full daemon on both servers, plus
``lvs_sync_daemon ens160 VI_1`` in global_defs: chime-ha runs conntrackd on
each server. server1's own services are stopped, so its checkers (and
server2's) route every connection to server2's echo servers, a real server
that survives the cut. The client opens 100 long-lived TCP connections through
each VIP, each exchanging a message every 100 ms; then server1's cable is
pulled. With synchronisation server2 commits server1's connections on takeover
and at least 99 of each 100 keep exchanging; without it (the control) the new
director knows none of them and they die.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import textwrap
import time

import pytest

from chimeha.lab.cluster import SeedCluster, chime_ha_available

pytestmark = pytest.mark.system

TARGETS = (("192.168.231.10", 8801), ("192.168.231.20", 80))
REAL_PORTS = (8801, 8802, 8033)
PER_TARGET = 100

ECHO = textwrap.dedent("""
    import asyncio, signal
    async def handle(r, w):
        try:
            while line := await r.readline():
                w.write(line)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        w.close()
    async def main():
        srvs = [await asyncio.start_server(handle, "0.0.0.0", p, reuse_address=True) for p in PORTS]
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
    asyncio.run(main())
""")

CLIENT = textwrap.dedent("""
    import asyncio, json, signal, sys, threading, time
    TARGETS, N, SECONDS = json.loads(sys.argv[1])
    echoes = {}
    async def conn(key, host, port, deadline):
        got = echoes.setdefault(key, [])
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            i = 0
            while time.monotonic() < deadline:
                w.write(b"%d\\n" % i)
                line = await asyncio.wait_for(r.readline(), deadline - time.monotonic() + 0.1)
                if not line:
                    return
                if line == b"%d\\n" % i:
                    got.append(time.monotonic())
                i += 1
                await asyncio.sleep(0.1)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            return
    async def main():
        # SECONDS is an upper bound: a line on stdin ends the run now (the survivors' window is over)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        def stop_on_stdin():
            if sys.stdin.readline():
                loop.call_soon_threadsafe(stop.set)
        threading.Thread(target=stop_on_stdin, daemon=True).start()
        deadline = time.monotonic() + SECONDS
        tasks = [asyncio.create_task(conn(f"{h}:{p}#{i}", h, p, deadline)) for h, p in TARGETS for i in range(N)]
        await asyncio.sleep(1)
        print("open", flush=True)
        await asyncio.wait([asyncio.gather(*tasks), asyncio.create_task(stop.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        print(json.dumps(echoes), flush=True)
    asyncio.run(main())
""")


def _configs(cluster_configs: dict[str, str], sync: bool) -> dict[str, str]:
    if not sync:
        return dict(cluster_configs)
    out = {}
    for name, text in cluster_configs.items():
        # the seed has no global_defs block: prepend one (everything else byte for byte)
        out[name] = "global_defs {\n    lvs_sync_daemon ens160 VI_1\n}\n" + text
    return out


def _status(cluster: SeedCluster, node: str) -> dict:
    out = cluster.nodes[node].run([sys.executable, "-c", "import sys; from chimeha.cli import main; sys.exit(main())", "status", "--json"], check=False).stdout
    try:
        return json.loads(out)
    except ValueError:
        return {}


def _only_server2_serves(cluster: SeedCluster) -> bool:
    for node in ("server1", "server2"):
        for vs in _status(cluster, node).get("virtual_servers", []):
            if vs["port"] not in (80, 8801):
                continue
            live = {rs["address"] for rs in vs["real_servers"] if rs["healthy"]}
            if live != {"192.168.231.12"}:
                return False
    return True


def run_failover(sync: bool, tag: str, monkeypatch) -> dict:
    """Survivors per target after server1's cut, plus the sync state server2 reported.

    Both runs use ``chime-ha run --snat-to vip`` (with sync it is the default), so the
    only difference is the replication of connection state.
    """
    from chimeha.lab import cluster as cluster_mod

    plain = cluster_mod.daemon_argv
    monkeypatch.setattr(cluster_mod, "daemon_argv", lambda kind: [*plain(kind), "--snat-to", "vip"])
    configs = _configs(cluster_mod.seed_configs("active-active"), sync)
    with SeedCluster(mode="active-active", tag=tag, configs=configs) as cluster:
        for node in ("server1", "server2"):
            cluster.stop_service(node, "chime-server")
            cluster.stop_service(node, "chime-portal")
        echo = cluster.nodes["server2"].popen([sys.executable, "-c", f"PORTS = {REAL_PORTS!r}\n" + ECHO],
                                             stdout=subprocess.PIPE, text=True)
        try:
            assert echo.stdout.readline().strip() == "ready"
            cluster.start_daemons()
            cluster.wait_for(lambda: all(cluster.holders(v) == ["server1"] for v, _ in TARGETS), 20,
                             "server1 did not take both VIPs")
            # server1's real servers fail their checks (delay_loop 6, connect_timeout 3) on both nodes
            assert cluster.wait_for(lambda: _only_server2_serves(cluster), 40, step=0.5), \
                "the checkers did not leave server2 as the only real server"
            if sync:
                assert cluster.wait_for(
                    lambda: (_status(cluster, "server2").get("lvs_sync") or {}).get("running"), 10, step=0.5)
            seconds = 40.0  # an upper bound: the client is told to stop once the window below is over
            client = cluster.client.popen([sys.executable, "-c", CLIENT,
                                           json.dumps([TARGETS, PER_TARGET, seconds])],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert client.stdout.readline().strip() == "open"
            time.sleep(2.5)  # every connection exchanging through server1, replicated to server2
            t_cut = time.monotonic()
            cluster.cut_link("server1")
            cluster.wait_for(lambda: all(cluster.holders(v) == ["server2"] for v, _ in TARGETS), 15,
                             "server2 did not take the VIPs")
            t_taken = time.monotonic()
            # A survivor needs >= 10 exchanges (one per 0.1 s) after t_taken + 8: stopping the
            # client 4 s later leaves room for ~40 (the fixed 24 s run used to leave ~8 s).
            # Without sync every connection dies early and the client prints its result at once.
            window_end = t_taken + 8 + 4
            while time.monotonic() < window_end and not select.select([client.stdout], [], [], 0.1)[0]:
                pass
            out, _ = client.communicate("stop\n", timeout=seconds + 30)
            echoes = json.loads(out.strip().splitlines()[-1])
            sync_state = _status(cluster, "server2").get("lvs_sync")
        finally:
            cluster.nodes["server2"].stop(echo)
    # a connection survived if it exchanged messages before the cut and again well after the takeover
    result = {}
    for host, port in TARGETS:
        keys = [k for k in echoes if k.startswith(f"{host}:{port}#")]
        before = [k for k in keys if any(t < t_cut for t in echoes[k])]
        alive = [k for k in before if sum(1 for t in echoes[k] if t > t_taken + 8) >= 10]
        result[f"{host}:{port}"] = {"opened": len(keys), "before_cut": len(before), "survived": len(alive)}
    result["takeover_s"] = round(t_taken - t_cut, 2)
    result["sync"] = sync_state
    return result


@pytest.fixture(scope="module")
def lab_ok():
    why = chime_ha_available()
    if why:
        pytest.skip(why)


def test_connections_survive_director_failover_with_sync(lab_ok, monkeypatch):
    res = run_failover(True, "sfo1", monkeypatch)
    print("with lvs_sync_daemon:", json.dumps(res))
    for host, port in TARGETS:
        r = res[f"{host}:{port}"]
        assert r["before_cut"] == PER_TARGET, res
        assert r["survived"] >= 99, res
    assert res["sync"]["running"] and res["sync"]["role"] == "master", res
    assert res["sync"]["last_commit_ok"] is True and res["sync"]["last_commit_at"] is not None, res


def test_without_sync_connections_die(lab_ok, monkeypatch):
    """The control: the same cut without lvs_sync_daemon loses (nearly) every connection."""
    res = run_failover(False, "sfo0", monkeypatch)
    print("without lvs_sync_daemon:", json.dumps(res))
    for host, port in TARGETS:
        r = res[f"{host}:{port}"]
        assert r["before_cut"] == PER_TARGET, res
        assert r["survived"] < 99, res
    assert res["sync"] is None
