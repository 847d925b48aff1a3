"""A real systemd (PID 1 of a systemd-nspawn container) inside one lab network namespace.

The container runs this machine's own OS tree (``-D / --volatile=yes``: /usr
read-only from the host, everything else a fresh tmpfs), so no image is
downloaded or built. It joins the lab namespace given (``--network-namespace-path``),
never the host's network, and boots only to ``basic.target``: none of the
host's packaged services (haproxy, frr, keepalived...) start in it. The
chime-ha unit under test is bound in at /etc/systemd/system with a drop-in
that points ExecStart/ExecReload at this checkout's venv (the unit's
/usr/bin/chime-ha is what the .deb installs; /usr is the host's and read-only).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "systemd" / "chime-ha.service"
MASKED = ("systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service",
          "systemd-resolved.service", "systemd-timesyncd.service")


def nspawn_unavailable() -> str | None:
    """Why a systemd container cannot run here, or None."""
    if os.geteuid() != 0:
        return "systemd-nspawn needs root"
    if not shutil.which("systemd-nspawn"):
        return "needs systemd-nspawn (apt-get install systemd-container)"
    if not Path("/lib/systemd/systemd").exists():
        return "needs systemd installed (/lib/systemd/systemd)"
    return None


class SystemdContainer:
    """Boot, drive with ``systemctl``, and power off one container (kill its nspawn by PID at worst)."""

    def __init__(self, netns: str, workdir: Path, config_text: str, name: str):
        self.netns, self.workdir, self.name = netns, workdir, name
        self.etc_ka = workdir / "etc-keepalived"
        self.units = workdir / "units"
        self.log_path = workdir / "nspawn.log"
        self.proc: subprocess.Popen | None = None
        self.init_pid: int | None = None
        self.etc_ka.mkdir(parents=True)
        (self.etc_ka / "keepalived.conf").write_text(config_text)
        dropin = self.units / "chime-ha.service.d"
        dropin.mkdir(parents=True)
        shutil.copy(UNIT, self.units / "chime-ha.service")
        self.exe = exe = REPO / ".venv" / "bin" / "chime-ha"
        (dropin / "checkout.conf").write_text(
            "[Service]\nExecStart=\n"
            f"ExecStart={exe} run -f ${{CHIME_HA_CONFIG}} --control /run/chime-ha/control.sock "
            "--journal /var/lib/chime-ha/journal.jsonl $CHIME_HA_OPTIONS\n"
            f"ExecReload=\nExecReload={exe} reload --control /run/chime-ha/control.sock\n")

    def __enter__(self) -> "SystemdContainer":
        cmd = ["systemd-nspawn", "-D", "/", "--volatile=yes", "--register=no", "--keep-unit", "-q",
               "-M", self.name, f"--network-namespace-path=/run/netns/{self.netns}",
               "--capability=CAP_NET_ADMIN", f"--bind-ro={REPO}", *self._interpreter_binds(), f"--bind={self.etc_ka}:/etc/keepalived",
               f"--bind={self.units}:/etc/systemd/system", "--console=read-only",
               "-b", "systemd.firstboot=off", "systemd.unit=basic.target",
               # the lab configured the namespace; with CAP_NET_ADMIN networkd would take it over,
               # and its wait-online would hold the unit's After=network-online.target for 2 minutes
               *(f"systemd.mask={u}" for u in MASKED)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_booted()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @staticmethod
    def _interpreter_binds() -> list[str]:
        # The venv's python links to the interpreter it was made from; outside /usr (pyenv,
        # /opt) that tree must be visible in the container too.
        base = Path(sys.base_prefix).resolve()
        return [] if base.parts[:2] == ("/", "usr") else [f"--bind-ro={base}"]

    def _wait_booted(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}: {self.log()[-2000:]}")
            if self.init_pid is None:
                try:
                    kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
                    self.init_pid = int(kids[0]) if kids else None
                except (FileNotFoundError, ProcessLookupError):
                    pass
            if self.init_pid is not None:
                state = self.systemctl("is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.2)
        raise TimeoutError(f"the container did not finish booting in {timeout} s: {self.log()[-2000:]}")

    def run(self, cmd: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside the container (all of its namespaces)."""
        return subprocess.run(["nsenter", "-t", str(self.init_pid), "-a", *cmd], capture_output=True, text=True,
                              check=check, timeout=timeout)

    def systemctl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.run(["systemctl", *args], check=check, timeout=timeout)

    def show(self, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", "chime-ha").stdout.strip()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def unit_journal(self) -> str:
        return self.run(["journalctl", "-u", "chime-ha", "--no-pager", "-o", "short-monotonic"],
                        check=False).stdout

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        if self.init_pid is not None and self.proc.poll() is None:
            self.run(["systemctl", "poweroff"], check=False, timeout=20)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)  # our own nspawn, by PID: it takes the container down
            self.proc.wait(timeout=10)
        self._log.close()
        self.proc = None
