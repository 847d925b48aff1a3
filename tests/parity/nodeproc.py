"""Small helpers for parity system tests: a chime-ha daemon inside a lab node, by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHIME_HA = os.environ.get("CHIMEHA_BIN") or str(Path(sys.executable).with_name("chime-ha"))


def wait_until(cond, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def start_tcpdump(host, args: list[str], timeout: float = 10.0) -> subprocess.Popen:
    """``tcpdump ARGS`` inside ``host`` (text stdout piped), returned once it is capturing.

    tcpdump says "listening on ..." on stderr after it has opened the interface: waiting
    for that line instead of a fixed sleep misses no packet sent afterwards. stderr is read
    with os.read (a buffered readline could swallow the line select() would wait for).
    """
    import selectors

    proc = host.popen(["tcpdump", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fd = proc.stderr.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=0.1):
                chunk = os.read(fd, 4096)
                seen += chunk
                if b"listening on" in seen:
                    return proc
                if not chunk:
                    break
    finally:
        sel.close()
    proc.kill()
    proc.wait(timeout=5)
    raise AssertionError(f"tcpdump did not start capturing within {timeout} s: {seen.decode(errors='replace')!r}")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


class NodeDaemon:
    """``chime-ha run`` inside ``node``, logging to a file; signals go to the daemon itself."""

    def __init__(self, node, conf_text: str, logfile: Path, conf: str = "/etc/keepalived/keepalived.conf",
                 args: tuple[str, ...] = ()):
        self.node, self.conf, self.logfile, self.args = node, conf, logfile, tuple(args)
        node.write_file(conf, conf_text)
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "NodeDaemon":
        self._log = open(self.logfile, "ab")
        self.proc = self.node.popen([CHIME_HA, "run", "-f", self.conf, *self.args],
                                    stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def pid(self) -> int:
        """Host PID of the daemon (nsenter's child)."""
        return wait_until(lambda: (children(self.proc.pid) or [None])[0], 10, "daemon process")

    def signal(self, sig: int) -> None:
        os.kill(self.pid(), sig)

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def terminate(self, timeout: float) -> float | None:
        """SIGTERM; seconds until it exited, or None if it did not within ``timeout`` (then SIGKILL)."""
        pid = self.pid()
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
            took = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            took = None
        self.kill()
        return took

    def kill(self) -> None:
        if self.proc is not None:
            self.node.stop(self.proc, grace=2)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
