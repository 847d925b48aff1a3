"""``--dataplane auto|ipvs|nft|proxy|none``: which backend forwards which service.

``auto`` prefers, per service, the fastest backend that implements it
exactly: IPVS (when the kernel has it), then nftables NAT, then the userspace
proxy; every choice comes with the reason the faster ones were skipped, and
the caller logs it. A forced choice that cannot implement a service exactly
is an error naming the service, never an approximation. ``none`` forwards
nothing (health checks and status only). DR and TUN need IPVS:
without it they are a configuration error, not a silent NAT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..catalog import DATAPLANES, ORDER
from ..types import LvsConfigError, Service, ServiceKey
from .ipvs import kernel_unavailable



@dataclass
class Choice:
    """The backend chosen for each service, and why (operator sentences)."""

    backend: dict[ServiceKey, str] = field(default_factory=dict)
    reasons: dict[ServiceKey, str] = field(default_factory=dict)

    def used(self) -> set[str]:
        return set(self.backend.values())


def choose(services: list[Service], dataplane: str, checkers: dict[str, object],
           ipvs_missing: str | None = None) -> Choice:
    """Assign a backend to each service.

    ``checkers`` maps backend name to an object with ``unsupported(service)``
    (the backends themselves, or stand-ins in tests). ``ipvs_missing`` is why
    IPVS cannot be used (default: probe ``/proc/net/ip_vs``). Raises
    LvsConfigError listing every service that cannot be served.
    """
    if dataplane not in DATAPLANES:
        raise LvsConfigError(f"--dataplane must be one of {', '.join(DATAPLANES)}, not {dataplane!r}")
    out = Choice()
    if dataplane == "none":  # checkers and status only: nothing is forwarded
        for svc in services:
            out.reasons[svc.key] = f"{svc.key}: not forwarded (--dataplane none: health checks and status only)"
        return out
    if ipvs_missing is None:
        ipvs_missing = kernel_unavailable() or ""
    errors = []
    for svc in services:
        kinds = {svc.lb_kind, *(d.lb_kind for d in svc.destinations)}
        if kinds - {"NAT"} and ipvs_missing:
            errors.append(f"{svc.key}: lb_kind {'/'.join(sorted(kinds - {'NAT'}))} needs IPVS, and "
                          f"{ipvs_missing}; nft and proxy only do NAT (use lb_kind NAT)")
            continue
        candidates = ORDER if dataplane == "auto" else (dataplane,)
        skipped = []
        for name in candidates:
            if name == "ipvs" and ipvs_missing:
                skipped.append(f"ipvs: {ipvs_missing}")
                continue
            why = checkers[name].unsupported(svc) if name in checkers else f"{name} backend not available"
            if why:
                skipped.append(f"{name}: {why}")
                continue
            out.backend[svc.key] = name
            out.reasons[svc.key] = f"{svc.key} -> {name}" + (f" (skipped {'; '.join(skipped)})" if skipped else "")
            break
        else:
            errors.append(f"{svc.key}: no data plane can forward it exactly ({'; '.join(skipped)})")
    if errors:
        raise LvsConfigError("; ".join(errors))
    return out
