"""Pure reconciler: the operations that turn the *actual* data-plane state into
the *desired* one (Kubernetes-style level-triggered reconcile).

Theory of operation
-------------------
Both inputs are :class:`~chimeha.lvs.types.DesiredState` values (a backend's
``read_actual()`` returns the same type). The output is an ordered list of
operations that is minimal and safe to apply in order:

1. destinations of services that go away or change identity are not touched
   one by one: ``DelService`` removes a service with all its destinations;
2. services whose own attributes changed (scheduler, persistence, forwarding
   method) are edited in place with ``EditService`` so established
   connections survive;
3. new services are added before their destinations;
4. inside a service, removed destinations go first, then edits (weight or
   forwarding method), then additions, so a weight never briefly exceeds what
   the operator configured on the way.

Services are visited in sorted key order, new destinations in configuration
order (rr and wrr follow it, as IPVS follows insertion order), so the same
inputs always give the same list (tests and logs can compare them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .types import DesiredState, Destination, Service, ServiceKey


@dataclass(frozen=True)
class AddService:
    service: Service  # without destinations: they follow as AddDest

    def __str__(self) -> str:
        return f"add service {self.service.key} ({self.service.scheduler})"


@dataclass(frozen=True)
class EditService:
    service: Service

    def __str__(self) -> str:
        return f"edit service {self.service.key} ({self.service.scheduler})"


@dataclass(frozen=True)
class DelService:
    key: ServiceKey

    def __str__(self) -> str:
        return f"delete service {self.key}"


@dataclass(frozen=True)
class AddDest:
    service: ServiceKey
    dest: Destination

    def __str__(self) -> str:
        return f"add {self.dest.key} weight {self.dest.weight} to {self.service}"


@dataclass(frozen=True)
class EditDest:
    service: ServiceKey
    dest: Destination

    def __str__(self) -> str:
        return f"set {self.dest.key} weight {self.dest.weight} in {self.service}"


@dataclass(frozen=True)
class DelDest:
    service: ServiceKey
    dest: Destination

    def __str__(self) -> str:
        return f"remove {self.dest.key} from {self.service}"


Operation = AddService | EditService | DelService | AddDest | EditDest | DelDest


def diff(desired: DesiredState, actual: DesiredState) -> list[Operation]:
    """Operations that make ``actual`` equal to ``desired`` (empty when they already are)."""
    ops: list[Operation] = []
    for key in sorted(set(actual.services) - set(desired.services), key=ServiceKey.sort_key):
        ops.append(DelService(key))
    for key in sorted(desired.services, key=ServiceKey.sort_key):
        want = desired.services[key]
        have = actual.services.get(key)
        if have is None:
            ops.append(AddService(_bare(want)))
            # configuration order, not sorted: rr/wrr sequences follow it (as IPVS follows insertion order)
            ops.extend(AddDest(key, d) for d in want.destinations)
            continue
        if want.attrs() != have.attrs():
            ops.append(EditService(_bare(want)))
        ops.extend(_diff_dests(key, want, have))
    return ops


def _bare(s: Service) -> Service:
    return replace(s, destinations=())


def _diff_dests(key: ServiceKey, want: Service, have: Service) -> list[Operation]:
    w = {d.key: d for d in want.destinations}
    h = {d.key: d for d in have.destinations}
    out: list[Operation] = [DelDest(key, h[k]) for k in sorted(set(h) - set(w))]
    out += [EditDest(key, w[k]) for k in sorted(set(w) & set(h)) if w[k] != h[k]]
    out += [AddDest(key, d) for d in want.destinations if d.key not in h]
    return out


def apply_to(state: DesiredState, ops: list[Operation]) -> DesiredState:
    """The state after ``ops``: what an in-memory backend holds (also the diff's own check)."""
    services = dict(state.services)
    for op in ops:
        if isinstance(op, DelService):
            services.pop(op.key, None)
        elif isinstance(op, (AddService, EditService)):
            old = services.get(op.service.key)
            dests = old.destinations if (old is not None and isinstance(op, EditService)) else ()
            services[op.service.key] = replace(op.service, destinations=dests)
        else:
            s = services[op.service]
            others = tuple(d for d in s.destinations if d.key != op.dest.key)
            if isinstance(op, DelDest):
                dests = others
            else:
                # Keep configuration order: an edit stays in place, an add goes last.
                dests = tuple(op.dest if d.key == op.dest.key else d for d in s.destinations)
                if isinstance(op, AddDest) and op.dest.key not in {d.key for d in s.destinations}:
                    dests = others + (op.dest,)
            services[op.service] = replace(s, destinations=dests)
    return DesiredState(services, dict(state.notes))
