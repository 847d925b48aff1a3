"""The seed document's verification section, run against a deployed cluster.

``chime-ha lab`` rehearses the document in namespaces; ``chime-ha verify``
does the same steps on the operator's real servers, over SSH, from where it
runs (a client of the VIPs):

1. ``ip -br a`` on each node: every VIP is on exactly one node, the master;
2. the Web UI and the API answer through the VIPs from here;
3. ``systemctl stop chime-server`` on the master: the VIPs move to the other
   node (the time is measured by polling ``ip -br a`` every 100 ms), and the
   Web UI and API answer again;
4. ``systemctl start chime-server``: the VIPs come back to the master and
   everything answers.

The report has the lab's PASS/FAIL style (:func:`chimeha.lab.runner.format_step`).
Whatever happens (a failed step, Ctrl-C, SIGTERM, a lost SSH connection),
the service stopped in step 3 is started again before it returns, and the
report says whether that worked.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from chimeha.lab.runner import StepResult
from chimeha.verify.remote import SshError, SshNode

POLL = 0.1


@dataclass
class VerifyReport:
    steps: list[StepResult]
    duration: float
    master: str | None = None
    interrupted: bool = False
    restored: bool | None = None  # None: nothing needed restoring
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and len(self.steps) == 4 and all(s.ok for s in self.steps) and not self.interrupted \
            and self.restored is not False and self.error is None


async def _answers(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """Whether an HTTP server answers at host:port (any status line counts: 401 still answers)."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
    except asyncio.TimeoutError:
        return False, "timeout"
    except OSError as exc:
        return False, exc.strerror or type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    text = line.decode("latin-1").strip()
    return (True, text) if text.startswith("HTTP/") else (False, f"not HTTP: {text[:40]!r}")


def check_endpoints(endpoints: Sequence[tuple[str, str, int]], timeout: float = 2.0) -> list[tuple[str, bool, str]]:
    """(label host:port, ok, what answered) for every endpoint, concurrently."""

    async def all_of():
        return await asyncio.gather(*(_answers(h, p, timeout) for _l, h, p in endpoints))

    results = asyncio.run(all_of())
    return [(f"{label} {h}:{p}", ok, why) for (label, h, p), (ok, why) in zip(endpoints, results)]


class _Interrupted(Exception):
    pass


class Verifier:
    def __init__(self, nodes: Sequence[SshNode], vips: Sequence[str], endpoints: Sequence[tuple[str, str, int]],
                 *, service: str = "chime-server", move_timeout: float = 15.0,
                 progress: Callable[[str], None] | None = None):
        self.nodes, self.vips, self.endpoints = list(nodes), list(vips), list(endpoints)
        self.service, self.move_timeout = service, move_timeout
        self.progress = progress or (lambda _t: None)
        self.stopped_on: SshNode | None = None

    def holders(self) -> dict[str, list[str]]:
        """VIP -> the names of the nodes that have it (any interface)."""
        found = {v: [] for v in self.vips}
        for n in self.nodes:
            have = set().union(*n.addresses().values())
            for v in self.vips:
                if v in have:
                    found[v].append(n.name)
        return found

    def _wait_all_on(self, name: str, since: float) -> float | None:
        while time.monotonic() - since < self.move_timeout:
            if all(h == [name] for h in self.holders().values()):
                return time.monotonic() - since
            time.sleep(POLL)
        return None

    def _endpoints_step(self, n: int, name: str, title: str) -> StepResult:
        t0 = time.monotonic()
        res = check_endpoints(self.endpoints)
        bad = [f"{what}: {why}" for what, ok, why in res if not ok]
        return StepResult(n, name, title, not bad, "; ".join(bad) if bad else f"{len(res)} endpoints answer",
                          details=[f"{w} -> {why}" for w, _ok, why in res], duration=time.monotonic() - t0)

    def run(self) -> VerifyReport:
        start = time.monotonic()
        report = VerifyReport([], 0.0)
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM,)}

        def on_term(_sig, _frm):
            raise _Interrupted()

        signal.signal(signal.SIGTERM, on_term)
        try:
            self._steps(report)
        except (KeyboardInterrupt, _Interrupted):
            report.interrupted = True
        except SshError as exc:
            report.error = str(exc)
        finally:
            report.restored = self._restore(report)
            for s, h in old.items():
                signal.signal(s, h)
            for node in self.nodes:
                node.close()
            report.duration = time.monotonic() - start
        return report

    def _restore(self, report: VerifyReport) -> bool | None:
        node, self.stopped_on = self.stopped_on, None
        if node is None:
            return None
        try:
            node.run(["systemctl", "start", self.service], timeout=60)
            report.notes.append(f"restored: systemctl start {self.service} on {node.name}")
            return True
        except SshError as exc:
            report.notes.append(f"COULD NOT RESTORE {self.service} on {node.name}: {exc}")
            return False

    def _steps(self, report: VerifyReport) -> None:
        t0 = time.monotonic()
        holders = self.holders()
        owners = {tuple(h) for h in holders.values()}
        ok = len(owners) == 1 and len(next(iter(owners))) == 1
        master = next(iter(owners))[0] if ok else None
        msg = (f"all VIPs on {master}" if ok else
               "VIPs not on exactly one node: " + ", ".join(f"{v} on {h or 'none'}" for v, h in holders.items()))
        report.steps.append(StepResult(1, "vips", "ip -br a: the VIPs are on the master only", ok, msg,
                                       duration=time.monotonic() - t0))
        self.progress(msg)
        report.master = master
        report.steps.append(self._endpoints_step(2, "answers", "Web UI and API answer through the VIPs"))
        if master is None or len(self.nodes) < 2:
            return
        mnode = next(n for n in self.nodes if n.name == master)
        other = next(n for n in self.nodes if n.name != master)

        t0 = time.monotonic()
        # marked before the stop is sent: an interruption while `systemctl stop` runs (the service
        # may be down already) must still start it again; starting a running service is harmless
        self.stopped_on = mnode
        mnode.run(["systemctl", "stop", self.service])
        moved = self._wait_all_on(other.name, t0)
        check = self._endpoints_step(3, "service-stop", "")
        ok = moved is not None and check.ok
        msg = (f"VIPs on {other.name} after {moved:.2f} s; {check.message}" if moved is not None else
               f"VIPs still {self.holders()} {self.move_timeout:.0f} s after the stop")
        report.steps.append(StepResult(3, "service-stop",
                                       f"systemctl stop {self.service} on {master} -> VIPs move to {other.name}",
                                       ok, msg, vip_move_time=moved, details=check.details,
                                       duration=time.monotonic() - t0))
        self.progress(msg)

        t0 = time.monotonic()
        mnode.run(["systemctl", "start", self.service])
        self.stopped_on = None
        back = self._wait_all_on(master, t0)
        check = self._endpoints_step(4, "service-start", "")
        ok = back is not None and check.ok
        msg = (f"VIPs back on {master} after {back:.2f} s; {check.message}" if back is not None else
               f"VIPs still {self.holders()} {self.move_timeout:.0f} s after the start")
        report.steps.append(StepResult(4, "service-start", f"systemctl start {self.service} on {master} -> VIPs come back",
                                       ok, msg, vip_move_time=back, details=check.details,
                                       duration=time.monotonic() - t0))
        self.progress(msg)
