"""Can keepalived run the seed's config of a lab mode on this machine? Ask before building.

Two things stop keepalived 2.2.7 from running the active-active seed here, and
both end the whole daemon a second after start, VRRP included (measured, see
/work/shared/seed/README.md):

* the first ``real_server`` of every ``virtual_server`` has a bare ``weight``
  line, which keepalived treats as a fatal configuration error;
* its checker process needs the kernel's ``ip_vs`` (LVS) module, which many
  kernels (containers, CI machines, this one) do not have.

:func:`keepalived_blockers` finds them without starting anything: the first
by running keepalived's own ``keepalived -t`` on the seed file (so the
operator reads keepalived's own words, with file and line), the second by
looking for ip_vs the way the kernel exposes it. Read-only: nothing is loaded,
started or written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

# keepalived -t exit statuses (keepalived(8)): 3 "configuration cannot be run";
# 2 "cannot initialise subsystems" is what 2.2.7 returns for a fatal keyword
# error like the bare `weight`. 4 (errors it runs around), 5 (script security
# unset) and 0 leave a config that runs.
_FATAL_TEST_STATUS = (1, 2, 3)


def ip_vs_available(proc_root: str = "/proc", modules_root: str = "/lib/modules") -> bool:
    """Whether the kernel has LVS: loaded (``/proc/net/ip_vs``), built in, or loadable as a module."""
    if os.path.exists(os.path.join(proc_root, "net", "ip_vs")):
        return True
    moddir = Path(modules_root) / os.uname().release
    try:
        if "ip_vs.ko" in (moddir / "modules.builtin").read_text(errors="replace"):
            return True
    except OSError:
        pass
    try:
        return any(moddir.rglob("ip_vs.ko*"))
    except OSError:
        return False


def keepalived_config_test(path: Path) -> tuple[int, list[str]]:
    """``keepalived -t -f PATH``: (exit status, the lines keepalived marks as errors, else all it said)."""
    proc = subprocess.run(["keepalived", "-t", "-f", str(path)], capture_output=True, text=True, timeout=30)
    said = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    # keepalived flags configuration errors with "***"; the rest is chatter
    # (missing interfaces on this host, script-security warnings).
    errors = [ln for ln in said if "***" in ln]
    return proc.returncode, errors or said


def keepalived_blockers(mode: str, daemons: dict[str, str], seed: Path | None = None) -> list[str]:
    """Why keepalived cannot run ``mode``'s seed configs on the servers given to it here; [] when it can."""
    if "keepalived" not in daemons.values():
        return []
    if not shutil.which("keepalived"):
        return ["keepalived is not installed (apt-get install keepalived)"]
    from chimeha.lab.cluster import seed_dir

    seed = seed or seed_dir()
    found = []
    needs_ip_vs = []
    for node, kind in daemons.items():
        if kind != "keepalived":
            continue
        path = seed / f"{mode}-{node}.conf"
        status, said = keepalived_config_test(path)
        if status in _FATAL_TEST_STATUS:
            found.append(f"{node}: `keepalived -t` refuses the seed config (exit status {status}): {' | '.join(said[:3])}")
        if re.search(r"^\s*virtual_server\b", path.read_text(encoding="utf-8", errors="replace"), re.MULTILINE):
            needs_ip_vs.append(node)
    if needs_ip_vs and not ip_vs_available():
        found.append(f"{' and '.join(needs_ip_vs)}: the config has virtual_server blocks, and this kernel has no "
                     "ip_vs (LVS) module: keepalived's checker process exits and takes the daemon down")
    return found
