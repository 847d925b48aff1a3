"""The lab's client: probes service endpoints on a fixed beat and reports every answer.

``python -m chimeha.lab.probe --interval 0.02 192.168.231.10:8801 ...`` runs in
the client node and prints one line per probe::

    <monotonic start time> <host:port> <1|0> <node that answered | error word>

Probes are launched on the beat whether or not earlier ones finished, so a
hanging connection (the VIP's owner unreachable) shows as a run of failures
with the right start times instead of stalling the clock. CLOCK_MONOTONIC is
shared by all namespaces of the machine, so the lab compares these times with
its own.

:func:`outage` turns such records into the client-visible outage of a window.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeResult:
    """One probe: when it started, what it targeted, and who answered."""

    t: float
    target: str
    ok: bool
    node: str  # answering node when ok, else a short error word

    @classmethod
    def parse(cls, line: str) -> "ProbeResult | None":
        parts = line.split()
        if len(parts) != 4 or parts[2] not in ("0", "1"):
            return None
        try:
            return cls(float(parts[0]), parts[1], parts[2] == "1", parts[3])
        except ValueError:
            return None

    def format(self) -> str:
        return f"{self.t:.6f} {self.target} {int(self.ok)} {self.node}"


@dataclass(frozen=True)
class Outage:
    """Client-visible outage of one target over a window."""

    total: float  # seconds without a successful answer
    longest: float
    failures: int  # failed probes
    probes: int
    recovered: bool  # the last probe in the window succeeded


def outage(results: list[ProbeResult], start: float, end: float) -> Outage:
    """Outage of one target's probes within [start, end].

    Each run of failed probes counts from its first failure to the first
    success after it (or to ``end`` when none came), so the figure does not
    depend on how long a single probe took to fail.
    """
    window = sorted((r for r in results if start <= r.t <= end), key=lambda r: r.t)
    total = longest = 0.0
    failures = 0
    run_start: float | None = None
    for r in window:
        if not r.ok:
            failures += 1
            if run_start is None:
                run_start = r.t
        elif run_start is not None:
            gap = r.t - run_start
            total += gap
            longest = max(longest, gap)
            run_start = None
    if run_start is not None:
        gap = end - run_start
        total += gap
        longest = max(longest, gap)
    recovered = bool(window) and window[-1].ok
    return Outage(total, longest, failures, len(window), recovered)


def _split_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"target {text!r}: expected HOST:PORT")
    return host, int(port)


async def fetch(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """One HTTP GET; (ok, answering node or error word)."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except asyncio.TimeoutError:
        return False, "timeout"
    except ConnectionRefusedError:
        return False, "refused"
    except OSError as exc:
        return False, (exc.strerror or "error").replace(" ", "-").lower()
    finally:
        if writer is not None:
            writer.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    if not lines or " 200 " not in lines[0] + " ":
        return False, "bad-answer"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-chime-node":
            return True, value.strip() or "?"
    return True, "?"


async def probe_forever(targets: list[tuple[str, int]], interval: float, timeout: float,
                        out=sys.stdout) -> None:
    """Probe every target each ``interval`` seconds, printing one line per result."""

    async def one(t: float, host: str, port: int) -> None:
        ok, who = await fetch(host, port, timeout)
        out.write(ProbeResult(t, f"{host}:{port}", ok, who).format() + "\n")
        out.flush()

    tasks: set[asyncio.Task] = set()
    next_t = time.monotonic()
    while True:
        now = time.monotonic()
        if now < next_t:
            await asyncio.sleep(next_t - now)
        t = time.monotonic()
        for host, port in targets:
            task = asyncio.create_task(one(t, host, port))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        next_t += interval
        if next_t < time.monotonic():  # fell behind: keep the beat, skip missed ticks
            next_t = time.monotonic() + interval


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chimeha.lab.probe", description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+", type=_split_target, metavar="HOST:PORT")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between probes (default 0.02)")
    parser.add_argument("--timeout", type=float, default=0.5, help="per-probe timeout in seconds (default 0.5)")
    parser.add_argument("--once", action="store_true", help="probe each target once and exit (0 if all answered)")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.timeout <= 0:
        parser.error("--interval and --timeout must be positive")
    if args.once:
        async def once() -> int:
            bad = 0
            for host, port in args.targets:
                ok, who = await fetch(host, port, args.timeout)
                print(ProbeResult(time.monotonic(), f"{host}:{port}", ok, who).format())
                bad += not ok
            return 1 if bad else 0
        return asyncio.run(once())
    try:
        asyncio.run(probe_forever(args.targets, args.interval, args.timeout))
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
