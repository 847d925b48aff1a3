"""The VRRP instance state machine, sans I/O.

Theory of operation
-------------------
This implements the protocol state machine of RFC 5798 / RFC 9568 section 6.4
(which subsumes RFC 3768 section 6.4 for VRRPv2) plus keepalived's FAULT
state, as a pure object: every input carries ``now`` (seconds, any epoch), and
every output is an action queued for :meth:`VrrpInstance.pop_actions`. The
owner of the instance arms one timer at :meth:`get_timer` and calls
:meth:`handle_timer` when it expires (aioquic style).

States and transitions:

* INIT -> MASTER at :meth:`start` when the configured priority is 255 (the
  address owner) and ``state MASTER`` is configured (section 6.4.1; keepalived
  requires both); otherwise INIT -> BACKUP with the Master_Down_Timer armed.
  A weight-0 tracked object that is down at start gives INIT -> FAULT.
* BACKUP (6.4.2): an advert with priority 0 re-arms the down timer to
  Skew_Time; an advert with priority >= ours (or any advert when
  ``nopreempt``, or a lower one while the ``preempt_delay`` window since
  start/recovery is open) re-arms it to Master_Down_Interval and, for v3,
  adopts the master's advert interval; a lower priority advert is ignored,
  so the timer runs out and we preempt. Timer expiry -> MASTER.
* MASTER (6.4.3): adverts every Advertisement_Interval; priority 0 heard ->
  advert at once; a higher priority advert, or an equal one from a higher
  primary address, -> BACKUP. A lower priority advert means another master
  exists: we report :class:`SplitBrain` and (keepalived default, unless
  ``lower_prio_no_advert``) answer with an advert at once so it steps down.
* Two address owners: a MASTER at priority 255 hearing another 255 is
  misconfigured. keepalived 2.2.7 (measured, see docs/vrrp.md) logs
  "CONFIGURATION ERROR ... reducing local priority", drops to 254 until the
  configuration is reloaded, and so yields by the normal rule -- whichever
  owner hears the other first, whatever the addresses. We do the same
  (:class:`PriorityChanged`, then MASTER -> BACKUP); :meth:`on_reload` ends it.
* Any state -> FAULT when a weight-0 track fails (a MASTER first sends
  priority 0 and removes its addresses); FAULT -> BACKUP on recovery. A
  ``spec.config_fault`` (unicast_fault_no_peer without peers) holds FAULT
  for good.
* :meth:`shutdown`: a MASTER sends priority 0 and removes its addresses;
  every state ends in INIT.

Split brain (not in the RFC, which assumes adverts reach everyone): an
episode starts when, as MASTER, we hear a valid non-zero advert from another
address that does not make us step down (:class:`SplitBrain`, ``healing``
False, once per rival). Each rival is forgotten when it has been silent for
the Master_Down_Interval a backup of ours would give it (its interval, our
priority), or when it sends priority 0 (it left MASTER). The episode ends
(one ``SplitBrain`` with ``healing`` True) when the last rival is forgotten,
driven by :meth:`get_timer`, or when we leave MASTER ourselves.

Gratuitous ARP/NA on becoming MASTER: a burst of ``garp_master_repeat`` at
once, another after ``garp_master_delay``, then every ``garp_master_refresh``
(if set) ``garp_master_refresh_repeat`` at a time. As keepalived does (2.2.7
vrrp_state_master_rx), every lower-priority advert a MASTER hears also
triggers ``garp_lower_prio_repeat`` announcements at once and again
``garp_lower_prio_delay`` later: the rival master has just pointed the
clients' ARP caches at itself, and this points them back once the partition
heals. With ``higher_prio_send_advert`` a MASTER that yields to a higher
priority sends one advert of its own first (keepalived's option).

Start-up and interfaces (keepalived, not the RFC): :meth:`start` may hold
the instance for a ``startup_delay`` (vrrp_startup_delay): the instance is a
BACKUP whose Master_Down_Timer counts from the end of the delay, so it hears
the current master but cannot take over before then. :meth:`set_link` puts
the instance in FAULT while its interface is missing (or has no address to
advertise from) and lets it recover when the interface is usable again.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from chimeha.track.weights import (Effective, causes_fault, effective_priority, file_contribution,
                                   file_faults, scales, track_label)
from chimeha.vrrp.events import (
    Action,
    AddAddresses,
    Counters,
    InstanceSpec,
    LowerPriorityHeard,
    PriorityChanged,
    RemoveAddresses,
    SendAdvert,
    SendGratuitous,
    SplitBrain,
    State,
    StateChanged,
)
from chimeha.vrrp.packet import Advertisement
from chimeha.vrrp.timing import master_down_interval, skew_time, wire_interval


#: At most this many garp_lower_prio_delay bursts wait at once (keepalived starts one timer per
#: lower-priority advert; a rival advertising fast must not grow the list without bound).
_MAX_PENDING_BURSTS = 16


def _ip_key(addr: str) -> int:
    try:
        return int(ipaddress.ip_address(addr))
    except ValueError:
        return -1


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f}"


class VrrpInstance:
    """One VRRP virtual router on this node (pure; see the module docstring)."""

    def __init__(self, spec: InstanceSpec):
        self.spec = spec
        self.name = spec.name
        self.state = State.INIT
        self.counters = Counters()
        self._actions: list[Action] = []
        self._track_states: dict[str, bool] = {}
        self._track_values: dict[str, int] = {}  # last value of each scaling track_file
        self._track_details: dict[str, str] = {}
        self._owner_conflict: str | None = None  # the other owner, while we are lowered to 254
        eff = self._effective()
        self.priority = eff.priority
        self._faults: tuple[str, ...] = eff.faults
        self._group_fault: str | None = None
        self.master_adver_interval = wire_interval(spec.advert_int, spec.version)
        self.master: str | None = None  # primary address of the current master (if not us)
        self.master_priority: int | None = None
        self._last_advert_at: float | None = None
        self._down_at: float | None = None
        self._down_reason: str | None = None
        self._advert_at: float | None = None
        self._garp_delay_at: float | None = None
        self._garp_refresh_at: float | None = None
        self._garp_extra_at: float | None = None  # garp_extra_if
        self._garp_lower_at: list[float] = []  # pending garp_lower_prio_delay bursts (keepalived stacks them)
        self._hold_until: float = 0.0  # vrrp_startup_delay: no takeover before this
        self._link_fault: str | None = None  # the interface is missing / has no address
        self._preempt_until: float = 0.0
        # Split brain: rival master address -> (last heard, its priority, forget at).
        self._rivals: dict[str, tuple[float, int, float]] = {}
        self._split_since: float | None = None
        self.last_change: StateChanged | None = None

    # -- public API ------------------------------------------------------
    @property
    def advert_interval(self) -> float:
        """Our own Advertisement_Interval as it goes on the wire."""
        return wire_interval(self.spec.advert_int, self.spec.version)

    @property
    def in_fault(self) -> bool:
        """True when own tracking, the interface or the sync group demands FAULT."""
        return (bool(self._faults) or self._group_fault is not None or self._link_fault is not None
                or self.spec.config_fault is not None)

    @property
    def link_fault(self) -> str | None:
        """Why the interface cannot be used (None: it can)."""
        return self._link_fault

    @property
    def own_faults(self) -> tuple[str, ...]:
        """Names of this instance's own tracked objects that demand FAULT (not the group's)."""
        return self._faults

    @property
    def group_fault(self) -> str | None:
        """The reason the sync group forces FAULT on this instance (None: it does not)."""
        return self._group_fault

    @property
    def faults(self) -> tuple[str, ...]:
        """Everything that holds this instance in FAULT: own tracks, the interface, then the group's reason."""
        return (self._faults + ((self._link_fault,) if self._link_fault else ())
                + ((self._group_fault,) if self._group_fault else ())
                + ((self.spec.config_fault,) if self.spec.config_fault else ()))

    def fault_reason(self) -> str:
        """Why this instance is (or would be) in FAULT, in operator words."""
        return self._fault_reason()

    @property
    def split_brain_peers(self) -> tuple[str, ...]:
        """Addresses of the other masters we currently hear (empty: no split brain)."""
        return tuple(self._rivals)

    def skew_time(self) -> float:
        """Skew_Time for our current priority and the master's interval."""
        return skew_time(self.priority, self.master_adver_interval, self.spec.version)

    def master_down_interval(self) -> float:
        """Master_Down_Interval for our current priority and the master's interval."""
        return master_down_interval(
            self.priority, self.master_adver_interval, self.spec.version, self.spec.down_timer_adverts
        )

    def start(self, now: float, startup_delay: float = 0.0) -> None:
        """Leave INIT (RFC 5798 6.4.1).

        ``startup_delay`` (keepalived's vrrp_startup_delay): for that long
        after ``now`` the instance is a BACKUP that cannot take over; its
        Master_Down_Timer counts from the end of the delay (keepalived 2.2.7
        vrrp_init_instance_sands). An address owner with ``state MASTER``
        takes over when the delay ends.
        """
        if self.state is not State.INIT:
            return
        self._hold_until = now + startup_delay if startup_delay > 0 else 0.0
        self._preempt_until = now + self.spec.preempt_delay
        if self.in_fault:
            self._to_fault(now, self._fault_reason() + " at start")
        elif self.spec.is_owner and self.spec.initial_state.upper() == "MASTER" and not self._hold_until:
            self._to_master(now, "address owner (priority 255) starting as MASTER")
        else:
            # keepalived 2.2.7: a waiting owner times out of BACKUP 1 us after the delay ends.
            owner = self.spec.is_owner and self.spec.initial_state.upper() == "MASTER"
            reason = f"started (vrrp_startup_delay {startup_delay:g} s)" if self._hold_until else "started"
            self._to_backup(now, reason, 0.0 if owner else self.master_down_interval())
            self._down_reason = ("address owner (priority 255) starting as MASTER after vrrp_startup_delay"
                                 if owner else None)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: no timer)."""
        times = [t for t in (self._down_at, self._advert_at, self._garp_delay_at, self._garp_refresh_at,
                             self._garp_extra_at) if t is not None]
        times.extend(forget for _, _, forget in self._rivals.values())
        if self._garp_lower_at:
            times.append(self._garp_lower_at[0])
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now`` (calling early is harmless)."""
        if self._down_at is not None and now >= self._down_at and self.state is State.BACKUP:
            self._down_at = None
            self._to_master(now, self._takeover_reason(now))
        if self._advert_at is not None and now >= self._advert_at and self.state is State.MASTER:
            self._send_advert(now)
            # Scheduled from the due time, not from `now`, so a late wake-up
            # does not stretch every later interval.
            self._advert_at = max(self._advert_at + self.advert_interval, now)
        if self._garp_delay_at is not None and now >= self._garp_delay_at:
            self._garp_delay_at = None
            if self.state is State.MASTER:
                self._garp(now, self.spec.garp_master_repeat, "master-delay")
        if self._garp_refresh_at is not None and now >= self._garp_refresh_at:
            if self.state is State.MASTER and self.spec.garp_master_refresh > 0:
                self._garp(now, self.spec.garp_master_refresh_repeat, "refresh")
                self._garp_refresh_at = self._garp_refresh_at + self.spec.garp_master_refresh
            else:
                self._garp_refresh_at = None
        if self._garp_extra_at is not None and now >= self._garp_extra_at:
            self._garp_extra_at = None
            if self.state is State.MASTER:
                s = self.spec
                self._actions.append(SendGratuitous(self.name, s.garp_extra_addresses, s.vip_interface, 1, "extra-if",
                                                    now, interval=s.garp_interval, na_interval=s.gna_interval))
                self._garp_extra_at = now + s.garp_extra_interval
        while self._garp_lower_at and now >= self._garp_lower_at[0]:
            self._garp_lower_at.pop(0)
            if self.state is State.MASTER:
                self._garp(now, self.spec.garp_lower_prio_repeat, "lower-priority-delay")
        if self._rivals:
            self._forget_silent_rivals(now)

    def handle_advert(self, adv: Advertisement, now: float) -> None:
        """Process one advertisement that :func:`packet.validate` accepted."""
        if adv.vrid != self.spec.vrid:
            return
        self.counters.adverts_received += 1
        if adv.priority == 0:
            self.counters.priority_zero_received += 1
        if self.state is State.BACKUP:
            self._backup_advert(adv, now)
        elif self.state is State.MASTER:
            self._master_advert(adv, now)

    def set_tracked(self, name: str, ok: bool, now: float, detail: str | None = None,
                    value: int | None = None) -> None:
        """A tracked object (after rise/fall) changed to ``ok``; recompute priority/FAULT.

        ``detail`` says how, in operator words, e.g. ``"failed 2/2 times"`` from
        :meth:`chimeha.track.Hysteresis.detail`; reasons then read
        ``track_script chk_server failed 2/2 times``. Without it they read
        ``... failed`` / ``... recovered``.

        ``value`` is the integer read from a track_file. It is used only by a
        file track with a non-zero weight, which then contributes
        ``value x weight`` (see :mod:`chimeha.track.weights`) and ignores ``ok``;
        other tracks ignore it.
        """
        track = next((t for t in self.spec.tracks if t.name == name), None)
        if track is None:
            return
        use_value = value is not None and scales(track)
        if use_value:
            if self._track_values.get(name) == value and name in self._track_values:
                return
            self._track_values[name] = value
            ok = not file_faults(track, value)
        else:
            if name in self._track_values:
                del self._track_values[name]  # the last report wins: back to OK/failed rules
            elif self._track_states.get(name) == ok and name in self._track_states:
                return
        self._track_states[name] = ok
        if detail:
            self._track_details[name] = detail
        else:
            self._track_details.pop(name, None)
        self._recompute(now, self._track_words(track, ok))

    def master_unreachable(self, address: str, now: float, reason: str | None = None) -> bool:
        """A fast failure detector (a tracked BFD session) says ``address`` is unreachable.

        Not in RFC 5798 and not in keepalived (whose track_bfd only shifts
        priorities): a BACKUP whose current master is ``address`` treats the
        master as gone at once, as if it had sent priority 0 (section 6.4.2):
        the Master_Down_Timer is cut to Skew_Time, so among several backups the
        highest priority still takes over first, and an advert from the master
        before then (a false alarm) re-arms the timer as usual. ``reason`` is
        the takeover reason (e.g. "BFD to 192.168.231.11 down: control
        detection time expired, 150 ms"). Returns True when the timer moved.
        """
        if self.state is not State.BACKUP or self.master is None or _ip_key(address) != _ip_key(self.master):
            return False
        due = now + self.skew_time()
        if self._down_at is not None and self._down_at <= due:
            return False
        self._down_at = due
        self._down_reason = reason or f"master {address} unreachable"
        return True

    def set_group_fault(self, reason: str | None, now: float) -> None:
        """Sync group: force FAULT (``reason``) or lift the group's FAULT (None)."""
        if reason == self._group_fault:
            return
        self._group_fault = reason
        self._recompute(now, reason or "sync group recovered")

    def set_link(self, fault: str | None, now: float) -> None:
        """The interface became unusable (``fault``: why, e.g. "interface eth0 does not exist") or usable (None).

        An unusable interface holds the instance in FAULT like a failed
        weight-0 track; a usable one lets it recover to BACKUP, with the
        Master_Down_Timer restarted, as after any FAULT.
        """
        if fault == self._link_fault:
            return
        self._link_fault = fault
        self._recompute(now, fault or "interface usable again")

    def announce_lower_priority(self, now: float) -> None:
        """A sync-group sibling heard a lower-priority master: re-announce our VIPs too (keepalived does)."""
        if self.state is State.MASTER:
            self._lower_prio_garp(now)

    def with_primary_address(self, address: str) -> None:
        """The interface's address to advertise from was learned (it was missing at start or changed)."""
        if address and address != self.spec.primary_address:
            self.spec = dataclasses.replace(self.spec, primary_address=address)

    def force_state(self, new: State, now: float, reason: str) -> None:
        """Sync group: follow a member into MASTER or BACKUP (ignored while in FAULT/INIT)."""
        if self.state in (State.FAULT, State.INIT) or self.state is new:
            return
        if new is State.MASTER:
            self._down_at = None
            self._to_master(now, reason)
        elif new is State.BACKUP:
            self._to_backup(now, reason, self.master_down_interval())

    def on_reload(self, now: float) -> None:
        """The configuration was reloaded and this instance kept as it is.

        Ends what keepalived ends at reload: the two-owners priority reduction.
        A MASTER whose priority comes back advertises it at once (keepalived
        2.2.7 sends an advert on reload, measured) and restarts its cadence.
        """
        if self._owner_conflict is None:
            return
        other, self._owner_conflict = self._owner_conflict, None
        before = self.priority
        self._recompute(now, f"configuration reloaded: address owner priority restored (conflict with {other})")
        if self.state is State.MASTER and self.priority != before:
            self._send_advert(now)
            self._advert_at = now + self.advert_interval

    def shutdown(self, now: float) -> None:
        """Stop: a MASTER sends priority 0 and removes its addresses; -> INIT."""
        if self.state is State.INIT:
            return
        if self.state is State.MASTER:
            self._send_advert(now, priority=0)
            self._remove_addresses(now)
        self._cancel_timers()
        self._change(State.INIT, now, "shutdown")

    def pop_actions(self) -> list[Action]:
        """Return and clear the actions queued since the last call."""
        out, self._actions = self._actions, []
        return out

    def snapshot(self) -> dict:
        """A JSON-able view for status pages and the journal."""
        return {
            "name": self.name,
            "state": self.state.value,
            "vrid": self.spec.vrid,
            "priority": self.priority,
            "base_priority": self.spec.priority,
            "master": self.master,
            "master_adver_interval": self.master_adver_interval,
            "faults": list(self._faults) + ([self._group_fault] if self._group_fault else []),
            "split_brain": {"active": bool(self._rivals), "peers": list(self._rivals), "since": self._split_since},
            "owner_conflict": self._owner_conflict,
            "timer": self.get_timer(),
            "counters": self.counters.as_dict(),
        }

    # -- state handlers --------------------------------------------------
    def _backup_advert(self, adv: Advertisement, now: float) -> None:
        if adv.priority == 0:
            self.master = adv.source
            self._down_at = max(now, self._hold_until) + self.skew_time()
            self._down_reason = f"received priority 0 from {adv.source}"
            return
        preempt_window = now < self._preempt_until
        if self.spec.nopreempt or adv.priority >= self.priority or preempt_window:
            if self.spec.version == 3 and adv.interval != self.master_adver_interval and adv.interval > 0:
                # RFC 5798 6.4.2: a v3 backup times the master by the master's interval.
                self.master_adver_interval = adv.interval
                self.counters.interval_adopted += 1
            self.master = adv.source
            self.master_priority = adv.priority
            self._last_advert_at = now
            self._down_at = max(now, self._hold_until) + self.master_down_interval()
            self._down_reason = None
        else:
            self.counters.lower_priority_received += 1
            self._down_reason = (
                f"preempting {adv.source} (priority {adv.priority} < our {self.priority})"
            )

    def _master_advert(self, adv: Advertisement, now: float) -> None:
        if adv.priority == 0:
            rival = self._rivals.pop(adv.source, None)
            if rival is not None and not self._rivals:
                self._end_split(now, adv.source, rival[1], f"{adv.source} left MASTER (sent priority 0)")
            self._send_advert(now)
            self._advert_at = now + self.advert_interval
            return
        if adv.priority == 255 and self.priority == 255:
            self._lower_for_owner_conflict(adv.source, now)
        higher = adv.priority > self.priority
        tie_lost = adv.priority == self.priority and _ip_key(adv.source) > _ip_key(self.spec.primary_address)
        if higher or tie_lost:
            if self.spec.higher_prio_send_advert:
                # keepalived: one advert of ours first, so a peer that cannot hear
                # the other master (a half-healed partition) learns that we yield.
                self._send_advert(now)
            if self.spec.version == 3 and adv.interval > 0:
                self.master_adver_interval = adv.interval
            self.master = adv.source
            self.master_priority = adv.priority
            self._last_advert_at = now
            if higher and self._owner_conflict == adv.source and adv.priority == 255:
                reason = f"higher priority 255 from {adv.source} (ours lowered to 254: two address owners)"
            elif higher:
                reason = f"higher priority {adv.priority} from {adv.source}"
            else:
                reason = f"equal priority {adv.priority} from higher address {adv.source}"
            self._to_backup(now, reason, self.master_down_interval())
            return
        # Another master at lower priority (or losing the tie): two masters.
        self.counters.lower_priority_received += 1
        interval = adv.interval if adv.interval > 0 else self.advert_interval
        forget = now + master_down_interval(self.priority, interval, self.spec.version, self.spec.down_timer_adverts)
        known = adv.source in self._rivals
        self._rivals[adv.source] = (now, adv.priority, forget)
        if not known:
            self._report_rival(adv, now)
        if not self.spec.lower_prio_no_advert:
            # keepalived "forcing new election": answer at once and restart the
            # advert cadence from this advert (measured against 2.2.7).
            self._send_advert(now)
            self._advert_at = now + self.advert_interval
        self._lower_prio_garp(now)
        self._actions.append(LowerPriorityHeard(self.name, adv.source, adv.priority, now))

    def _lower_prio_garp(self, now: float) -> None:
        """keepalived's answer to a lower-priority master: point the clients back at us."""
        if self.spec.garp_lower_prio_repeat <= 0:
            return
        self._garp(now, self.spec.garp_lower_prio_repeat, "lower-priority")
        if self.spec.garp_lower_prio_delay > 0 and len(self._garp_lower_at) < _MAX_PENDING_BURSTS:
            self._garp_lower_at.append(now + self.spec.garp_lower_prio_delay)

    def _report_rival(self, adv: Advertisement, now: float) -> None:
        if self._split_since is None:
            self._split_since = now
            self.counters.split_brain += 1
        if adv.priority == self.priority:
            why = f"{adv.source} is also MASTER at equal priority {adv.priority}; we win on the higher address"
        else:
            why = f"{adv.source} is also MASTER at lower priority {adv.priority} (ours {self.priority})"
        self._actions.append(SplitBrain(self.name, adv.source, adv.priority, self.priority, why, now))

    def _forget_silent_rivals(self, now: float) -> None:
        silent = [(peer, r) for peer, r in self._rivals.items() if now >= r[2]]
        for peer, _ in silent:
            del self._rivals[peer]
        if silent and not self._rivals:
            peer, (heard, prio, _) = max(silent, key=lambda item: item[1][0])
            self._end_split(now, peer, prio, f"no advertisement from {peer} for {_fmt(now - heard)} s")

    def _end_split(self, now: float, peer: str, peer_priority: int, why: str) -> None:
        """Close the episode: one ``SplitBrain(healing=True)``."""
        self._rivals.clear()
        self._split_since = None
        self._actions.append(SplitBrain(self.name, peer, peer_priority, self.priority,
                                        f"split brain over: {why}", now, healing=True))

    def _lower_for_owner_conflict(self, other: str, now: float) -> None:
        self._owner_conflict = other
        self._recompute(now, f"CONFIGURATION ERROR: {other} is also an address owner (priority 255); "
                             "lowered to 254 until the configuration is reloaded")

    # -- transitions -----------------------------------------------------
    def _effective(self) -> Effective:
        eff = effective_priority(self.spec.priority, self.spec.tracks, self._track_states,
                                 self._track_values)
        if self._owner_conflict is not None and eff.priority == 255:
            return Effective(254, eff.faults)
        return eff

    def _recompute(self, now: float, reason: str) -> None:
        eff = self._effective()
        if eff.priority != self.priority:
            self._actions.append(PriorityChanged(self.name, self.priority, eff.priority, reason, now, self.state))
            self.priority = eff.priority
        self._faults = eff.faults
        if self.state is State.INIT:
            return
        if self.in_fault and self.state is not State.FAULT:
            self._to_fault(now, self._fault_reason())
        elif not self.in_fault and self.state is State.FAULT:
            self._preempt_until = now + self.spec.preempt_delay
            self._to_backup(now, reason, self.master_down_interval())

    def _faulting(self, t) -> bool:
        if scales(t) and t.name in self._track_values:
            return self.spec.priority < 255 and file_faults(t, self._track_values[t.name])
        return causes_fault(t, self._track_states.get(t.name, t.init_ok))

    def _track_words(self, track, ok: bool) -> str:
        if track.name in self._track_values and scales(track):
            v = self._track_values[track.name]
            r = file_contribution(track, v)
            rev = " reverse" if track.reverse else ""
            if not ok:
                return f"{track_label(track)} {track.name} value {v} x weight {track.weight}{rev} = {r} (below -253)"
            return f"{track_label(track)} {track.name} value {v} x weight {track.weight}{rev} = {r:+d}"
        detail = self._track_details.get(track.name)
        if detail is None:
            detail = "recovered" if ok else "failed"
        # A weight-0 reverse track faults while the object is OK: say so.
        rev = " (reverse)" if track.reverse and causes_fault(track, ok) else ""
        return f"{track_label(track)} {track.name} {detail}{rev}"

    def _fault_reason(self) -> str:
        if self.spec.config_fault:  # permanent: nothing else can end it
            return self.spec.config_fault
        if self._link_fault:  # the root cause: a missing interface also fails its carrier track
            return self._link_fault
        if self._faults:
            parts = [self._track_words(t, self._track_states.get(t.name, t.init_ok)) for t in self.spec.tracks
                     if self._faulting(t)]
            return " and ".join(parts)
        return self._link_fault or self._group_fault or "fault"

    def _takeover_reason(self, now: float) -> str:
        if self._down_reason:
            return self._down_reason
        if self.master and self._last_advert_at is not None:
            return f"no advertisement from {self.master} for {_fmt(now - self._last_advert_at)} s"
        return f"no advertisement received for {_fmt(self.master_down_interval())} s (master down interval)"

    def _to_master(self, now: float, reason: str) -> None:
        self._change(State.MASTER, now, reason)
        self.counters.became_master += 1
        self.master = None
        self.master_priority = None
        self.master_adver_interval = self.advert_interval
        self._down_at = None
        self._down_reason = None
        self._actions.append(
            AddAddresses(self.name, self.spec.virtual_ipaddresses, self.spec.virtual_ipaddresses_excluded,
                         self.spec.virtual_routes, now, rules=self.spec.virtual_rules)
        )
        self._send_advert(now)
        self._advert_at = now + self.advert_interval
        self._garp(now, self.spec.garp_master_repeat, "master")
        self._garp_delay_at = now + self.spec.garp_master_delay if self.spec.garp_master_delay > 0 else None
        self._garp_refresh_at = now + self.spec.garp_master_refresh if self.spec.garp_master_refresh > 0 else None
        extra = self.spec.garp_extra_interval
        self._garp_extra_at = now + extra if extra > 0 and self.spec.garp_extra_addresses else None

    def _to_backup(self, now: float, reason: str, down_in: float) -> None:
        was_master = self.state is State.MASTER
        self._cancel_timers()
        if was_master:
            self.counters.released_master += 1
            self._remove_addresses(now)
        self._down_at = max(now, self._hold_until) + down_in
        self._change(State.BACKUP, now, reason)

    def _to_fault(self, now: float, reason: str) -> None:
        if self.state is State.MASTER:
            self.counters.released_master += 1
            self._send_advert(now, priority=0)
            self._remove_addresses(now)
        self._cancel_timers()
        self.master = None
        self.counters.entered_fault += 1
        self._change(State.FAULT, now, reason)

    def _change(self, new: State, now: float, reason: str) -> None:
        if self._rivals and new is not State.MASTER:
            # Before the StateChanged, so a consumer clearing its split-brain
            # flag on leaving MASTER sees the end first.
            peer = max(self._rivals, key=lambda p: self._rivals[p][0])
            others = [p for p in self._rivals if p != peer]
            also = f" (and {', '.join(others)})" if others else ""
            self._end_split(now, peer, self._rivals[peer][1], f"we left MASTER for {new}{also}: {reason}")
        old, self.state = self.state, new
        change = StateChanged(self.name, old, new, reason, now)
        self.last_change = change
        self._actions.append(change)

    def _cancel_timers(self) -> None:
        self._down_at = self._advert_at = self._garp_delay_at = self._garp_refresh_at = self._garp_extra_at = None
        self._garp_lower_at.clear()

    # -- outputs ---------------------------------------------------------
    def _send_advert(self, now: float, priority: int | None = None) -> None:
        prio = self.priority if priority is None else priority
        if prio == 0:
            self.counters.priority_zero_sent += 1
        self.counters.adverts_sent += 1
        s = self.spec
        self._actions.append(
            SendAdvert(s.name, s.vrid, s.version, s.family, prio, self.advert_interval,
                       tuple(s.advert_addresses), s.auth_type, s.auth_pass, now)
        )

    def _remove_addresses(self, now: float) -> None:
        s = self.spec
        self._actions.append(
            RemoveAddresses(s.name, s.virtual_ipaddresses, s.virtual_ipaddresses_excluded, s.virtual_routes, now,
                            rules=s.virtual_rules)
        )

    def _garp(self, now: float, count: int, why: str) -> None:
        if count <= 0:
            return
        s = self.spec
        addrs = s.virtual_ipaddresses + s.virtual_ipaddresses_excluded
        self._actions.append(SendGratuitous(self.name, addrs, s.vip_interface, count, why, now,
                                            interval=s.garp_interval, na_interval=s.gna_interval))
