"""Commands on a deployed node over SSH, and the two facts verification needs from it.

One multiplexed OpenSSH connection per node (``ControlMaster``): the first
command pays for the handshake, every poll after it costs one round trip,
so "have the VIPs moved yet?" can be asked every 100 ms. ``BatchMode`` makes
a missing key or an unknown host key fail at once with ssh's own message
instead of prompting.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from chimeha.errors import HostError


class SshError(HostError):
    """A command could not be run on a node (ssh failed, or the command did); str() says which and why."""


@dataclass
class SshNode:
    """A node reached as ``ssh DEST`` (``user@host``, or a Host alias from ~/.ssh/config)."""

    name: str
    dest: str
    ssh_options: tuple[str, ...] = ()
    connect_timeout: float = 5.0
    _control_dir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def _argv(self, command: str) -> list[str]:
        if self._control_dir is None:
            self._control_dir = tempfile.TemporaryDirectory(prefix="chime-ha-verify-")
        control = Path(self._control_dir.name) / "ctl"
        return ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(self.connect_timeout)}",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={control}", "-o", "ControlPersist=60",
                *self.ssh_options, self.dest, command]

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run ``argv`` on the node (quoted for its shell); SshError when ssh or, with ``check``, the command fails."""
        command = " ".join(shlex.quote(a) for a in argv)
        try:
            proc = subprocess.run(self._argv(command), capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SshError(f"{self.name} ({self.dest}): `{command}` did not finish in {timeout:.0f} s") from None
        if proc.returncode == 255:  # ssh's own failure: connection, authentication, host key
            raise SshError(f"{self.name} ({self.dest}): ssh failed: {proc.stderr.strip() or 'exit 255'}")
        if check and proc.returncode != 0:
            raise SshError(f"{self.name}: `{command}` exited {proc.returncode}: "
                              f"{(proc.stderr or proc.stdout).strip()[:300]}")
        return proc

    def addresses(self) -> dict[str, set[str]]:
        """``ip -br a``: interface -> its addresses (no prefix length), as the document's step reads them."""
        return parse_ip_brief(self.run(["ip", "-br", "a"]).stdout)

    def close(self) -> None:
        if self._control_dir is not None:
            control = Path(self._control_dir.name) / "ctl"
            if control.exists():  # stop the multiplexing master this object started
                subprocess.run(["ssh", "-o", f"ControlPath={control}", "-O", "exit", self.dest],
                               capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
            self._control_dir.cleanup()
            self._control_dir = None


def parse_ip_brief(text: str) -> dict[str, set[str]]:
    """Parse ``ip -br a`` output (``ens160  UP  192.168.231.11/24 192.168.231.10/32 fe80::1/64``)."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name = parts[0].split("@", 1)[0]
        out[name] = {p.split("/", 1)[0] for p in parts[2:] if "/" in p or ":" in p or p[:1].isdigit()}
    return out
