"""What a kept lab leaves behind, and how ``chime-ha lab down`` removes it.

``chime-ha lab`` names every namespace ``chhalab<random>-...`` (tag ``lab``),
so ``lab down`` can find exactly those, kill the processes inside them by PID
(a node's init is among them; its death ends the node's PID namespace) and
delete them, with the daemon logs the kept lab recorded. Test and benchmark
runs use other tags and are never touched.
A small JSON file per kept lab under ``/run/chime-ha-lab/`` records how to
enter each node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from chimeha.lab.netns import NAME_PREFIX, kill_namespace_pids

LAB_TAG = "lab"
LAB_PREFIX = NAME_PREFIX + LAB_TAG
STATE_DIR = Path("/run/chime-ha-lab")


def save_kept(cluster) -> dict:
    """Record a kept cluster; returns what was recorded (enter commands, logs)."""
    nodes = {**cluster.nodes}
    if cluster.client is not None:
        nodes[cluster.client.name] = cluster.client
    info = {
        "prefix": cluster.topo.prefix if cluster.topo else "",
        "namespaces": [n.netns for n in nodes.values()] + ([cluster.topo.switch_ns] if cluster.topo else []),
        "enter": {name: f"nsenter -t {n.init_pid} -p -m -n -- bash" for name, n in nodes.items()},
        "logdir": str(cluster.logdir),
    }
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    (STATE_DIR / f"{info['prefix'].rstrip('-') or 'lab'}.json").write_text(json.dumps(info, indent=2))
    return info


def lab_namespaces(prefix: str = LAB_PREFIX) -> list[str]:
    """Namespaces made by ``chime-ha lab`` (never those of tests or benchmarks)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def _remove_logdir(state_file: Path) -> None:
    """Delete the daemon-log directory a kept lab recorded, if it is one the lab made."""
    try:
        logdir = Path(json.loads(state_file.read_text()).get("logdir") or "")
    except (OSError, ValueError, AttributeError):
        return
    # Only a directory of the shape SeedCluster creates: never whatever a
    # tampered state file might name.
    if logdir.name.startswith("chime-ha-lab-") and logdir.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(logdir, ignore_errors=True)


def teardown_all(tag: str = LAB_TAG) -> list[str]:
    """Kill what runs in every namespace of labs tagged ``tag``, delete them; returns their names."""
    removed = []
    prefix = NAME_PREFIX + tag[:4]
    for ns in lab_namespaces(prefix):
        kill_namespace_pids(ns)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        removed.append(ns)
    if STATE_DIR.is_dir():
        for f in STATE_DIR.glob(f"{prefix}*.json"):
            _remove_logdir(f)
            f.unlink(missing_ok=True)
        try:
            os.rmdir(STATE_DIR)
        except OSError:
            pass
    return removed
