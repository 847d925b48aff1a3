"""What `chime-ha run` loads when it is not asked to serve metrics, and what a transition costs.

prometheus_client (with http.server, email and urllib behind it) is ~2.6 MiB of
the daemon's RSS: it must be loaded only for ``--metrics``. The import check
runs in a fresh interpreter, since this test process has long imported it.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from chimeha.observe import attach
from chimeha.vrrp.events import State, StateChanged

from observe_fakes import FakeDaemon

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed" / "active-standby-server1.conf"

# What cli/run.py's run() and _main() import and build, minus daemon.start()
# (which needs root and raw sockets): load, Daemon, attach_running, close.
RUN_PATH = textwrap.dedent("""
    import asyncio, json, sys, tempfile, os
    import chimeha.cli.run as run
    from chimeha.config import load
    from chimeha.runtime.daemon import Daemon

    async def main(path, metrics):
        result = load(path)
        assert result.ok, [str(d) for d in result.diagnostics]
        daemon = Daemon(path, result.config)
        with tempfile.TemporaryDirectory() as tmp:
            args = run.argparse.Namespace(control=os.path.join(tmp, "control.sock"), metrics=metrics,
                                          journal=os.path.join(tmp, "j.jsonl"), dump_dir=tmp,
                                          control_max_connections=64)
            closers = await run._start_observe(daemon, args, run.logging.getLogger("t"))
            assert len(closers) == 1, "the observer did not start"
            loaded = sorted(m for m in sys.modules if m.split(".")[0] in
                            ("prometheus_client", "http", "email") or m in ("chimeha.observe.metrics",
                                                                             "chimeha.observe.http",
                                                                             "chimeha.config.render"))
            for close in closers:
                await close()
        return loaded

    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2] or None))))
""")


def _loaded_modules(metrics: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", RUN_PATH, str(SEED), metrics],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_run_without_metrics_never_imports_prometheus_client():
    # chimeha.config.render (writing a config back) is not needed to run either.
    assert _loaded_modules("") == []


def test_run_with_metrics_does_load_them():
    # The counter-check: the probe above would see the modules if they were loaded.
    loaded = _loaded_modules("127.0.0.1:0")
    assert "prometheus_client" in loaded and "chimeha.observe.metrics" in loaded
    assert "chimeha.observe.http" in loaded


def test_observer_without_address_has_no_metrics_or_listener_unless_asked():
    plain = attach(FakeDaemon(), control_path=None, metrics_addr=None, journal_path=None, signals=False)
    assert plain.metrics is None and plain.http is None
    plain.on_transition(StateChanged(instance="VI_1", old=State.BACKUP, new=State.MASTER, reason="x", at=1.0))
    asked = attach(FakeDaemon(), control_path=None, metrics_addr=None, journal_path=None, signals=False,
                   metrics=True)
    assert asked.metrics is not None and asked.http is None
    assert b"chimeha_vrrp_state" in asked.metrics.render()


class CountingDaemon(FakeDaemon):
    """Counts full and per-instance snapshots."""

    def __init__(self):
        super().__init__()
        self.full = 0
        self.single: list[str] = []

    def snapshot(self) -> dict:
        self.full += 1
        return super().snapshot()

    def instance_snapshot(self, name):
        self.single.append(name)
        inst = self.snap["instances"].get(name)
        return None if inst is None else dict(inst)


def test_a_transition_builds_no_status_at_all():
    """A 100-instance failover is 100 transitions: each one is journaled from the event alone."""
    daemon = CountingDaemon()
    obs = attach(daemon, control_path=None, metrics_addr=None, journal_path=None, signals=False, metrics=True)
    obs.poll()
    before = daemon.full
    entry = obs.on_transition(StateChanged(instance="VI_2", old=State.BACKUP, new=State.MASTER,
                                           reason="no advertisement", at=1.0, failover=3.0121))
    assert (daemon.full, daemon.single) == (before, [])
    assert entry["failover_seconds"] == 3.0121
    assert obs._summary_cached() == "VI_1 MASTER; VI_2 MASTER"
    gone = obs.on_transition(StateChanged(instance="gone", old=State.MASTER, new=State.INIT,
                                          reason="removed", at=2.0))
    assert gone["instance"] == "gone" and "failover_seconds" not in gone
    assert (daemon.full, daemon.single) == (before, [])
