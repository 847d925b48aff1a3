"""Driving the BGP speaker (FRR bgpd) from the daemon: announce follows health.

Theory of operation
-------------------
:func:`attach` is called by the daemon after the virtual servers start. With
a ``chimeha_bgp`` block it starts one ``bgpd`` (FRR) as a child process, in
the daemon's own namespaces, with its own config, pid file and vty socket
under ``state_dir``; never the host's FRR service. The child gets
``PR_SET_PDEATHSIG(SIGKILL)``: when chime-ha dies, however it dies, the
kernel kills bgpd, its TCP session to the router closes and the router
withdraws this director's next hop at once (or within the hold time when
the whole host vanishes).

A reconcile task wakes on every VRRP state change (``state_hooks``) and at
least every ``TICK`` seconds (virtual-server quorum has no hook of its own),
computes :func:`chimeha.bgp.policy.decide` from the quorum map and the
instance states, and, when the desired set differs from what bgpd originates,
applies the difference with one ``vtysh`` call (``network P`` /
``no network P``), then reads the RIB back (``show bgp ... json``). On stop it
withdraws everything first, lets the UPDATE leave, and only then stops bgpd;
the daemon calls it before the data plane stops.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import time
from typing import Any

from chimeha.bgp import frr, policy, steer
from chimeha.config.model_bgp import BgpConfig
from chimeha.errors import HostError

log = logging.getLogger("chimeha.bgp")

TICK = 0.2  # seconds between policy evaluations when nothing wakes us
STATUS_EVERY = 2.0  # seconds between session-state refreshes (status, metrics)
PR_SET_PDEATHSIG = 1


class SpeakerError(HostError):
    """The speaker cannot be started or driven (missing program, socket never came up...)."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _term_with_parent() -> None:  # the guard shell of a daemon that drops privileges
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


#: zebra and bfdd switch to FRR's user, and a uid change clears PR_SET_PDEATHSIG: a root shell
#: keeps it instead and, on SIGTERM (ours, or the kernel's when chime-ha dies), stops the daemon.
GUARD = ['sh', '-c', 'trap \'kill "$c" 2>/dev/null; wait "$c"; exit 0\' TERM; "$@" & c=$!; wait "$c"',
         "chimeha-frr-guard"]


class FrrSpeaker:
    """One bgpd process and the vtysh commands that drive it."""

    def __init__(self, bgp: BgpConfig, vtysh: str = "vtysh"):
        self.bgp = bgp
        self.dir = bgp.state_dir
        self.vtysh_prog = vtysh
        self.proc: asyncio.subprocess.Process | None = None
        #: with BFD: zebra and bfdd, started before bgpd and stopped after it
        self.helpers: dict[str, asyncio.subprocess.Process] = {}
        self.starts = 0

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    async def _spawn(self, argv: list[str], guarded: bool = False) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *(GUARD + argv if guarded else argv), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_term_with_parent if guarded else _die_with_parent, start_new_session=True)

    @property
    def helper_dir(self) -> str:
        return self._path("zebra")

    def _vty_dir(self, daemon: str) -> str:
        return self.dir if daemon == "bgpd" else self.helper_dir

    def _common(self, daemon: str) -> list[str]:
        d = self._vty_dir(daemon)
        return ["-P", "0", "--vty_socket", d, "-i", os.path.join(d, f"{daemon}.pid"),
                "--log", f"file:{os.path.join(d, daemon + '.log')}"]

    def _helper_dir(self) -> None:
        """zebra and bfdd drop to FRR's user (they refuse root: it is not in the frrvty group), so
        they get a directory of their own, owned by it; the state dir only lets it through (0711)."""
        import pwd

        try:
            user = pwd.getpwnam("frr")
        except KeyError:
            raise SpeakerError("bfd needs FRR's system user 'frr' (apt-get install frr)") from None
        os.chmod(self.dir, 0o711)
        os.makedirs(self.helper_dir, mode=0o700, exist_ok=True)
        os.chown(self.helper_dir, user.pw_uid, user.pw_gid)

    async def _start_helpers(self, deadline: float) -> None:
        """BFD: zebra (bgpd and bfdd talk through it) then bfdd, in our namespaces."""
        progs = os.path.dirname(self.bgp.speaker)
        self._helper_dir()
        zserv = os.path.join(self.helper_dir, "zserv.api")
        for daemon, extra in (("zebra", ["-z", zserv]),
                              ("bfdd", ["-z", zserv, "--bfdctl", os.path.join(self.helper_dir, "bfdd.sock")])):
            prog = os.path.join(progs, daemon)
            if not os.path.exists(prog):
                raise SpeakerError(f"{prog}: not found (bfd needs FRR's {daemon}; apt-get install frr)")
            conf = os.path.join(self.helper_dir, f"{daemon}.conf")
            with open(conf, "w") as fh:
                fh.write("hostname chime-ha\n")
            proc = await self._spawn([prog, *self._common(daemon), *extra, "-f", conf], guarded=True)
            self.helpers[daemon] = proc
            while True:
                if proc.returncode is not None:
                    raise SpeakerError(f"{daemon} exited with status {proc.returncode} at start; see "
                                       f"{self.helper_dir}/{daemon}.log")
                try:
                    await self.vtysh("show version", daemon=daemon)
                    break
                except SpeakerError:
                    if time.monotonic() > deadline:
                        raise SpeakerError(f"{daemon} did not answer on its vty within the start timeout") from None
                    await asyncio.sleep(0.05)

    async def start(self, timeout: float = 10.0) -> None:
        if not os.path.exists(self.bgp.speaker):
            raise SpeakerError(f"{self.bgp.speaker}: not found (apt-get install frr)")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        deadline = time.monotonic() + timeout
        bfd = frr.wants_bfd(self.bgp)
        if bfd:
            await self._start_helpers(deadline)
        conf = self._path("bgpd.conf")
        with open(conf, "w") as fh:
            fh.write(frr.render_config(self.bgp))
        # -n: nothing into the kernel (a director only originates); -Z: no zebra, unless BFD needs it
        zebra = ["-z", os.path.join(self.helper_dir, "zserv.api")] if bfd else ["-Z"]
        argv = [self.bgp.speaker, "-S", *zebra, "-n", *self._common("bgpd"), "-f", conf]
        self.proc = await self._spawn(argv)
        self.starts += 1
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise SpeakerError(f"bgpd exited with status {self.proc.returncode} at start; see "
                                   f"{self.dir}/bgpd.log")
            try:
                await self.vtysh("show bgp summary json")
                log.info("bgp: bgpd (pid %d) is up, AS %d%s", self.proc.pid, self.bgp.local_as,
                         ", BFD through zebra + bfdd" if bfd else "")
                return
            except SpeakerError:
                await asyncio.sleep(0.05)
        raise SpeakerError(f"bgpd did not answer on {self.dir}/bgpd.vty within {timeout:.0f} s")

    @property
    def running(self) -> bool:
        return (self.proc is not None and self.proc.returncode is None
                and all(p.returncode is None for p in self.helpers.values()))

    async def vtysh(self, *commands: str, timeout: float = 10.0, daemon: str = "bgpd") -> str:
        argv = [self.vtysh_prog, "--vty_socket", self._vty_dir(daemon), "-d", daemon]
        for c in commands:
            argv += ["-c", c]
        try:
            p = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                     stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise SpeakerError(f"cannot run vtysh: {exc.strerror} (apt-get install frr)") from None
        try:
            out, err = await asyncio.wait_for(p.communicate(), timeout)
        except asyncio.TimeoutError:
            p.kill()
            await p.wait()
            raise SpeakerError(f"vtysh {' ; '.join(commands)}: no answer within {timeout:.0f} s") from None
        text = out.decode(errors="replace")
        if p.returncode != 0 or "failed to connect" in text.lower():
            raise SpeakerError(f"vtysh {' ; '.join(commands)}: {(err or out).decode(errors='replace').strip()}")
        return text

    async def originated(self) -> set[str]:
        out = set()
        for afi in ("ipv4", "ipv6"):
            out |= frr.originated(await self.vtysh(f"show bgp {afi} unicast json"))
        return out

    async def sessions(self) -> dict[str, dict]:
        return frr.sessions(await self.vtysh("show bgp summary json"))

    async def apply(self, announce: list[str], withdraw: list[str]) -> None:
        cmds = frr.change_commands(self.bgp, announce, withdraw)
        if cmds:
            await self.vtysh(*cmds)

    async def stop(self, grace: float = 3.0) -> None:
        """bgpd first (its session ends with a NOTIFICATION), then bfdd and zebra."""
        for proc in [self.proc, self.helpers.get("bfdd"), self.helpers.get("zebra")]:
            if proc is None or proc.returncode is not None:
                continue
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        self.helpers = {}

    async def bfd_peers(self) -> list[dict]:
        """``show bfd peers json`` (empty without BFD)."""
        if not self.helpers:
            return []
        try:
            return json.loads(await self.vtysh("show bfd peers json", daemon="bfdd") or "[]")
        except ValueError:
            return []


class BgpManager:
    """Keeps the speaker's originated prefixes equal to the policy's decision."""

    def __init__(self, daemon: Any, bgp: BgpConfig, speaker: FrrSpeaker | None = None):
        self.daemon = daemon
        self.bgp = bgp
        self.speaker = speaker or FrrSpeaker(bgp)
        self.decision = policy.Decision()
        self.actual: set[str] = set()
        self.peers: dict[str, dict] = {}
        self.errors: list[str] = []
        self.changes = 0
        self.last_change: float | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._status_at = 0.0
        self.steering = Steering(bgp) if bgp.forwarding == "direct" else None

    async def start(self) -> None:
        await self.speaker.start()
        await self._snat(True)
        self.daemon.state_hooks.append(self._on_state)
        await self.reconcile()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="bgp reconcile")

    def _on_state(self, _action: Any) -> None:
        self._wake.set()

    def _decide(self) -> policy.Decision:
        lvs = getattr(self.daemon, "lvs", None)
        quorum = dict(getattr(getattr(lvs, "desired", None), "quorum", {}) or {})
        states = {st.name: str(st.state) for st in self.daemon.node.status()}
        by_vs, by_inst = policy.inputs(self.daemon.config, quorum, states)
        scripts = {name: t.state.ok for name, t in self.daemon.scripts.items()}
        return policy.decide(self.bgp, by_vs, by_inst, stopping=self._stopping, now=time.monotonic(),
                             scripts=scripts)

    async def reconcile(self) -> None:
        d = self._decide()
        changed = d.announce != self.decision.announce
        self.decision = d
        if not self.speaker.running:
            return
        if changed or d.announce != self.actual:
            add, remove = policy.changes(d.announce, self.actual)
            for p in add:
                log.info("bgp: announcing %s", p)
            for p in remove:
                log.warning("bgp: withdrawing %s (%s)", p, d.withheld.get(p, "no longer configured"))
            await self.speaker.apply(add, remove)
            self.actual = await self.speaker.originated()
            self.changes += 1
            self.last_change = time.time()
        if self.steering is not None:
            await self.steering.sync(self.decision.announce, getattr(self.daemon, "lvs", None))

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), TICK)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                if not self.speaker.running:
                    await self._restart()
                await self.reconcile()
                if time.monotonic() - self._status_at >= STATUS_EVERY:
                    self._status_at = time.monotonic()
                    self.peers = await self.speaker.sessions()
                    for b in await self.speaker.bfd_peers():
                        if b.get("peer") in self.peers:
                            self.peers[b["peer"]]["bfd"] = b.get("status")
                    self.actual = await self.speaker.originated()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the speaker's trouble must never take VRRP down
                msg = str(exc)
                if msg not in self.errors:
                    log.error("bgp: %s", msg)
                self.errors = (self.errors + [msg])[-5:]
                await asyncio.sleep(1.0)

    async def _restart(self) -> None:
        log.error("bgp: bgpd exited (status %s); restarting it",
                  self.speaker.proc.returncode if self.speaker.proc else None)
        self.actual = set()
        await self.speaker.stop()  # what is left of bgpd / zebra / bfdd
        await self.speaker.start()

    async def stop(self) -> None:
        """Withdraw everything, let the UPDATE leave, stop bgpd (before the data plane stops)."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            self.decision = self._decide()
            if self.speaker.running and self.actual:
                log.info("bgp: withdrawing %s before stopping", ", ".join(sorted(self.actual)))
                await self.speaker.apply([], sorted(self.actual))
                await asyncio.sleep(0.2)  # bgpd sends the withdraw at once (MRAI 0); give it the wire
        except Exception as exc:
            log.error("bgp: withdrawing at stop failed: %s (stopping bgpd ends the session anyway)", exc)
        if self._on_state in self.daemon.state_hooks:
            self.daemon.state_hooks.remove(self._on_state)
        await self.speaker.stop()
        self.actual = set()
        if self.steering is not None:
            await self.steering.sync(set(), None)
        await self._snat(False)

    async def _snat(self, on: bool) -> None:
        """ECMP: the router may send a flow to any director, and a real server must answer
        through the director that NATed it, so every DNATed flow to an announced
        virtual server is masqueraded (table ``ip chimeha_bgp``; see docs/bgp.md)."""
        vips = sorted({a.address for a in self.bgp.announce if ":" not in a.address
                       and any(vs.address and vs.address == a.address for vs in self.daemon.config.virtual_servers)})
        script = "table ip chimeha_bgp {}\ndelete table ip chimeha_bgp\n"
        if on and vips:
            script += ("table ip chimeha_bgp {\n chain postrouting {\n"
                       "  type nat hook postrouting priority srcnat + 1; policy accept;\n"
                       f"  ct status dnat ct original ip daddr {{ {', '.join(vips)} }} masquerade\n }}\n}}\n")
        elif on:
            return
        try:
            p = await asyncio.create_subprocess_exec("nft", "-f", "-", stdin=asyncio.subprocess.PIPE,
                                                     stdout=asyncio.subprocess.DEVNULL,
                                                     stderr=asyncio.subprocess.PIPE)
            _, err = await p.communicate(script.encode())
            if p.returncode != 0:
                log.error("bgp: nft (masquerade for ECMP): %s", err.decode().strip())
        except OSError as exc:
            log.error("bgp: cannot run nft for the ECMP masquerade: %s", exc)

    def snapshot(self) -> dict:
        """The "bgp" section of the daemon snapshot (JSON-able)."""
        sp = self.speaker
        return {
            "speaker": {"program": self.bgp.speaker, "pid": sp.proc.pid if sp.proc else None,
                        "running": sp.running, "starts": sp.starts, "state_dir": self.bgp.state_dir},
            "local_as": self.bgp.local_as, "router_id": self.bgp.router_id,
            "peers": {a: dict(p) for a, p in sorted(self.peers.items())},
            "announced": sorted(self.actual), "desired": sorted(self.decision.announce),
            "withheld": dict(sorted(self.decision.withheld.items())),
            "changes": self.changes, "last_change": self.last_change, "errors": list(self.errors),
            "forwarding": self.bgp.forwarding,
            **({"steered": self.steering.steered, "not_steered": self.steering.skipped}
               if self.steering is not None else {}),
        }


class Steering:
    """``forwarding direct``: keeps the netdev steering table equal to the announced hashed services."""

    def __init__(self, bgp: BgpConfig):
        self.bgp = bgp
        self.text = ""
        self.steered: list[str] = []
        self.skipped: list[str] = []
        self._devices: dict[str, str] = {}
        self._from: tuple = ()

    async def sync(self, announce: set[str], lvs: Any) -> None:
        from chimeha.lvs.backends.nft import JHASH_SEED, schedule_slots  # the NAT path's table and seed

        desired = getattr(getattr(lvs, "desired", None), "services", None) or {}
        stamp = (frozenset(announce), desired)
        if self._from and stamp[0] == self._from[0] and stamp[1] is self._from[1]:
            return  # nothing changed since the last sync (the LVS manager replaces its state on change)
        addrs = {p.split("/")[0] for p in announce}
        found, skipped = steer.services(addrs, desired, schedule_slots)
        script = steer.render("", "", [], JHASH_SEED)
        if found:
            dev_in = await self._device(self.bgp.neighbors[0].address)
            outs = {await self._device(a) for s in found for a in s.slots if a}
            if dev_in is None or len(outs) != 1 or None in outs:
                skipped += [f"{s.address}:{s.port}/{s.protocol}: the router and the real servers must each be "
                            f"reached through one interface (router {dev_in}, real servers {sorted(map(str, outs))})"
                            for s in found]
                found = []
            else:
                script = steer.render(dev_in, outs.pop(), found, JHASH_SEED)
        if script != self.text:
            err = await _nft(script)
            if err:
                log.error("bgp: nft (steering): %s", err)
                return
            self.text = script
            for s in found:
                log.info("bgp: steering %s:%d/%s statelessly (%d live real servers)", s.address, s.port,
                         s.protocol, len({a for a in s.slots if a}))
            for why in skipped:
                if why not in self.skipped:
                    log.warning("bgp: not steered: %s", why)
        self._from = stamp
        self.steered = [f"{s.address}:{s.port}/{s.protocol}" for s in found]
        self.skipped = skipped

    async def _device(self, addr: str) -> str | None:
        if addr not in self._devices:
            try:
                p = await asyncio.create_subprocess_exec("ip", "-j", "route", "get", addr,
                                                         stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.DEVNULL)
                out, _ = await p.communicate()
                self._devices[addr] = (json.loads(out or b"[]") or [{}])[0].get("dev")
            except (OSError, ValueError):
                return None
        return self._devices[addr]


async def _nft(script: str) -> str | None:
    """Load ``script`` with ``nft -f -``; the error text, or None."""
    try:
        p = await asyncio.create_subprocess_exec("nft", "-f", "-", stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await p.communicate(script.encode())
    except OSError as exc:
        return f"cannot run nft: {exc}"
    return err.decode().strip() if p.returncode != 0 else None


async def attach(daemon: Any) -> BgpManager | None:
    """Start BGP for the daemon's config (None without a ``chimeha_bgp`` block or on error, logged)."""
    from chimeha.config.build_bgp import build_bgp

    diags: list = []
    bgp = build_bgp(daemon.config, diags)
    if bgp is None:
        for d in diags:
            if d.severity == "error":
                log.error("%s", d)
        return None
    mgr = BgpManager(daemon, bgp)
    try:
        await mgr.start()
    except SpeakerError as exc:
        log.error("bgp: %s; nothing is announced", exc)
        await mgr.speaker.stop()
        return None
    return mgr
