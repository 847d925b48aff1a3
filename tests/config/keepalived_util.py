"""Run ``keepalived -t`` on configs inside a lab namespace (never the host's).

keepalived checks that the configured interfaces exist, so the namespace gets
the interfaces our corpus and the samples use (``ens160``, ``eth0``..``eth3``),
made as veth pairs inside the namespace.

``keepalived -t`` exit status (2.2.7, measured): 0 clean, 2 fatal parse error
(e.g. a keyword missing its parameter), 5 any logged configuration problem
(including ones it works around, such as an unknown keyword), 6 only the
script-security violation.  "Accepts" means 0 or 6.
"""

from __future__ import annotations

import os

KEEPALIVED_ACCEPT = (0, 6)


def prepare_host(topology):
    host = topology.add_host("ka", "192.168.231.11/24", ifname="ens160")
    for i in range(4):
        host.run(["ip", "link", "add", f"eth{i}", "type", "veth", "peer", "name", f"kpeer{i}"])
        host.run(["ip", "link", "set", f"eth{i}", "up"])
    return host


def keepalived_test(host, path, config_id: str | None = None) -> tuple[int, str]:
    """(exit status, output) of ``keepalived -t -f PATH`` run in ``host``'s namespace."""
    cmd = ["timeout", "20", "keepalived", "-t", "-l", "-n", "-f", os.path.abspath(str(path))]
    if config_id:
        cmd[3:3] = ["-i", config_id]
    proc = host.run(cmd, check=False, timeout=30)
    return proc.returncode, (proc.stdout + proc.stderr)
