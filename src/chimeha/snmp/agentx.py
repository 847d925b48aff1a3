"""The AgentX protocol (RFC 2741) for a read-only subagent, sans I/O.

keepalived serves its MIBs through net-snmp's ``snmpd`` as an AgentX
subagent; chime-ha does the same, so an operator's existing ``snmpd.conf``
(``master agentx``) and walks keep working. This module is only the wire
format and the lookups; :mod:`chimeha.observe.snmp` owns the socket.

What a read-only subagent needs of the protocol:

* it sends ``Open`` (session id 0), gets a ``Response`` whose header carries
  the session id, then ``Register`` for each subtree it serves;
* the master sends ``Get``, ``GetNext`` and ``GetBulk`` with search ranges
  (section 5.2: a start OID whose ``include`` flag says whether the start
  itself qualifies, and an end OID that bounds the search, exclusive; a null
  end means no bound), and the subagent answers with a ``Response`` whose
  header copies the request's session, transaction and packet ids;
* ``TestSet`` is answered ``notWritable``; ``CommitSet``/``UndoSet``/
  ``CleanupSet`` with no error (nothing was tested, so nothing to do);
  ``Close`` ends the session.

Every PDU says its byte order (``NETWORK_BYTE_ORDER`` flag); we send network
order and read either.
"""

from __future__ import annotations

import bisect
import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from chimeha.errors import RemoteError

# PDU types (section 6.1)
OPEN, CLOSE, REGISTER, UNREGISTER = 1, 2, 3, 4
GET, GETNEXT, GETBULK = 5, 6, 7
TESTSET, COMMITSET, UNDOSET, CLEANUPSET = 8, 9, 10, 11
NOTIFY, PING = 12, 13
RESPONSE = 18

# header flags
INSTANCE_REGISTRATION = 0x01
NON_DEFAULT_CONTEXT = 0x08
NETWORK_BYTE_ORDER = 0x10

# varbind types (section 5.4)
INTEGER, OCTET_STRING, NULL, OBJECT_IDENTIFIER = 2, 4, 5, 6
IP_ADDRESS, COUNTER32, GAUGE32, TIME_TICKS, OPAQUE, COUNTER64 = 64, 65, 66, 67, 68, 70
NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW = 128, 129, 130

# Response errors (section 6.2.16)
NO_ERROR = 0
NOT_WRITABLE = 17
PROCESSING_ERROR = 268

# Close reasons (section 6.2.2)
REASON_SHUTDOWN = 5

HEADER_LEN = 20
INTERNET = (1, 3, 6, 1)
Oid = tuple[int, ...]


class AgentXError(RemoteError, ValueError):
    """A PDU from the master agent could not be decoded."""


@dataclass(frozen=True)
class Header:
    type: int
    flags: int
    session_id: int
    transaction_id: int
    packet_id: int
    payload_length: int

    @property
    def order(self) -> str:
        return "!" if self.flags & NETWORK_BYTE_ORDER else "<"


@dataclass(frozen=True)
class SearchRange:
    start: Oid
    end: Oid  # () = unbounded
    include: bool


@dataclass(frozen=True)
class Request:
    """A decoded PDU from the master: its header and whatever the type carries."""

    header: Header
    ranges: tuple[SearchRange, ...] = ()
    non_repeaters: int = 0
    max_repetitions: int = 0
    sys_uptime: int = 0  # Response
    error: int = 0  # Response
    varbinds: tuple["VarBind", ...] = ()  # Response (ours to Open/Register carry none we need)


@dataclass(frozen=True)
class VarBind:
    oid: Oid
    type: int
    value: object = None


# -- encoding ---------------------------------------------------------------------

def _header(pdu_type: int, payload: bytes, *, session_id: int = 0, transaction_id: int = 0,
            packet_id: int = 0, flags: int = 0) -> bytes:
    return struct.pack("!BBBBIIII", 1, pdu_type, flags | NETWORK_BYTE_ORDER, 0, session_id,
                       transaction_id, packet_id, len(payload)) + payload


def encode_oid(oid: Sequence[int], include: bool = False) -> bytes:
    """An OID (section 5.1), using the ``1.3.6.1.x`` prefix compression when it applies."""
    oid = tuple(oid)
    prefix = 0
    if len(oid) > 4 and oid[:4] == INTERNET and 0 < oid[4] < 256:
        prefix, oid = oid[4], oid[5:]
    return struct.pack("!BBBB", len(oid), prefix, int(include), 0) + b"".join(struct.pack("!I", s) for s in oid)


def encode_octets(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data + b"\0" * (-len(data) % 4)


def encode_varbind(vb: VarBind) -> bytes:
    head = struct.pack("!HH", vb.type, 0) + encode_oid(vb.oid)
    t, v = vb.type, vb.value
    if t in (INTEGER, COUNTER32, GAUGE32, TIME_TICKS):
        mask = 0xFFFFFFFF
        return head + struct.pack("!I", int(v) & mask)
    if t == COUNTER64:
        return head + struct.pack("!Q", int(v) & 0xFFFFFFFFFFFFFFFF)
    if t == OCTET_STRING or t == OPAQUE:
        return head + encode_octets(v if isinstance(v, bytes) else str(v).encode())
    if t == IP_ADDRESS:
        return head + encode_octets(ipaddress.IPv4Address(v).packed)
    if t == OBJECT_IDENTIFIER:
        return head + encode_oid(v)
    if t in (NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW):
        return head
    raise ValueError(f"unknown varbind type {t}")


def open_pdu(oid: Oid, description: str, timeout: int = 0, packet_id: int = 1) -> bytes:
    body = struct.pack("!B3x", timeout) + encode_oid(oid) + encode_octets(description.encode())
    return _header(OPEN, body, packet_id=packet_id)


def register_pdu(session_id: int, subtree: Oid, *, priority: int = 127, timeout: int = 0,
                 packet_id: int = 0) -> bytes:
    body = struct.pack("!BBBB", timeout, priority, 0, 0) + encode_oid(subtree)
    return _header(REGISTER, body, session_id=session_id, packet_id=packet_id)


def close_pdu(session_id: int, reason: int = REASON_SHUTDOWN, packet_id: int = 0) -> bytes:
    return _header(CLOSE, struct.pack("!B3x", reason), session_id=session_id, packet_id=packet_id)


def response_pdu(req: Header, varbinds: Iterable[VarBind] = (), *, error: int = NO_ERROR, index: int = 0) -> bytes:
    body = struct.pack("!IHH", 0, error, index) + b"".join(encode_varbind(v) for v in varbinds)
    return _header(RESPONSE, body, session_id=req.session_id, transaction_id=req.transaction_id,
                   packet_id=req.packet_id)


# -- decoding ---------------------------------------------------------------------

def decode_header(data: bytes) -> Header:
    if len(data) < HEADER_LEN:
        raise AgentXError(f"{len(data)} bytes: shorter than an AgentX header")
    version, pdu_type, flags, _r = data[0], data[1], data[2], data[3]
    if version != 1:
        raise AgentXError(f"AgentX version {version}, expected 1")
    order = "!" if flags & NETWORK_BYTE_ORDER else "<"
    sid, tid, pid, plen = struct.unpack_from(order + "IIII", data, 4)
    return Header(pdu_type, flags, sid, tid, pid, plen)


def _oid(data: bytes, pos: int, order: str) -> tuple[Oid, bool, int]:
    if len(data) < pos + 4:
        raise AgentXError("truncated OID")
    n, prefix, include, _ = data[pos:pos + 4]
    pos += 4
    if len(data) < pos + 4 * n:
        raise AgentXError(f"truncated OID: {n} sub-identifiers announced")
    subs = struct.unpack_from(f"{order}{n}I", data, pos)
    pos += 4 * n
    oid = (INTERNET + (prefix,) + subs) if prefix else subs
    return tuple(oid), bool(include), pos


def _octets(data: bytes, pos: int, order: str) -> tuple[bytes, int]:
    if len(data) < pos + 4:
        raise AgentXError("truncated octet string")
    (n,) = struct.unpack_from(order + "I", data, pos)
    pos += 4
    if len(data) < pos + n:
        raise AgentXError("truncated octet string")
    return data[pos:pos + n], pos + n + (-n % 4)


def decode(data: bytes) -> Request:
    """One whole PDU (header + payload) -> :class:`Request`. Raises :class:`AgentXError`."""
    h = decode_header(data)
    body = data[HEADER_LEN:HEADER_LEN + h.payload_length]
    if len(body) < h.payload_length:
        raise AgentXError(f"payload truncated: {len(body)} of {h.payload_length} bytes")
    order, pos = h.order, 0
    if h.flags & NON_DEFAULT_CONTEXT and h.type in (GET, GETNEXT, GETBULK, TESTSET, NOTIFY, PING):
        _ctx, pos = _octets(body, pos, order)
    if h.type in (GET, GETNEXT, GETBULK):
        non_rep = max_rep = 0
        if h.type == GETBULK:
            if len(body) < pos + 4:
                raise AgentXError("truncated GetBulk")
            non_rep, max_rep = struct.unpack_from(order + "HH", body, pos)
            pos += 4
        ranges = []
        while pos < len(body):
            start, include, pos = _oid(body, pos, order)
            end, _inc, pos = _oid(body, pos, order)
            ranges.append(SearchRange(start, end, include))
        return Request(h, tuple(ranges), non_rep, max_rep)
    if h.type == RESPONSE:
        if len(body) < 8:
            raise AgentXError("truncated Response")
        uptime, error, _index = struct.unpack_from(order + "IHH", body, 0)
        return Request(h, sys_uptime=uptime, error=error)
    return Request(h)


def pdu_length(buffer: bytes) -> int | None:
    """Bytes of the first whole PDU in ``buffer``, or None if more must be read."""
    if len(buffer) < HEADER_LEN:
        return None
    total = HEADER_LEN + decode_header(buffer).payload_length
    return total if len(buffer) >= total else None


# -- answering ----------------------------------------------------------------------

@dataclass
class MibView:
    """A sorted snapshot of the objects a subagent serves: OID -> (type, value)."""

    objects: dict[Oid, tuple[int, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._keys = sorted(self.objects)

    def get(self, oid: Oid) -> VarBind:
        if oid in self.objects:
            t, v = self.objects[oid]
            return VarBind(oid, t, v)
        # noSuchInstance for a missing cell beside existing ones (same length, same column and
        # leading index), noSuchObject otherwise: without the MIB's structure at hand this is
        # an approximation, and snmpget shows both as "no such ... at this OID".
        i = bisect.bisect_left(self._keys, oid)
        near = [k for k in self._keys[max(0, i - 1):i + 1] if len(k) == len(oid) and k[:-1] == oid[:-1]]
        return VarBind(oid, NO_SUCH_INSTANCE if near else NO_SUCH_OBJECT)

    def next(self, rng: SearchRange) -> VarBind:
        i = (bisect.bisect_left if rng.include else bisect.bisect_right)(self._keys, rng.start)
        if i < len(self._keys) and (not rng.end or self._keys[i] < rng.end):
            oid = self._keys[i]
            t, v = self.objects[oid]
            return VarBind(oid, t, v)
        return VarBind(rng.start, END_OF_MIB_VIEW)


def answer(req: Request, view: MibView) -> bytes | None:
    """The Response PDU to one request (None for PDUs that take no answer)."""
    h = req.header
    if h.type == GET:
        return response_pdu(h, [view.get(r.start) for r in req.ranges])
    if h.type == GETNEXT:
        return response_pdu(h, [view.next(r) for r in req.ranges])
    if h.type == GETBULK:
        out = [view.next(r) for r in req.ranges[:req.non_repeaters]]
        repeaters = list(req.ranges[req.non_repeaters:])
        for _ in range(req.max_repetitions if repeaters else 0):
            row = [view.next(r) for r in repeaters]
            out.extend(row)
            if all(vb.type == END_OF_MIB_VIEW for vb in row):
                break
            repeaters = [SearchRange(vb.oid, r.end, False) for vb, r in zip(row, repeaters)]
        return response_pdu(h, out)
    if h.type == TESTSET:
        return response_pdu(h, error=NOT_WRITABLE, index=1)
    if h.type in (COMMITSET, UNDOSET):  # nothing was tested, so nothing to commit or undo
        return response_pdu(h)
    return None  # CleanupSet, Close, Notify... take no answer (section 7.2.4.4)


DEFAULT_MASTER = "unix:/var/agentx/master"


def parse_address(spec: str | None) -> tuple[str, str, int]:
    """A net-snmp AgentX address (``snmp_socket``) -> (``"unix"``, path, 0) or (``"tcp"``, host, port).

    Accepted as net-snmp and keepalived accept them: ``unix:/path``, a bare
    absolute path, ``tcp:HOST:PORT``, ``HOST:PORT`` and ``tcp:PORT`` /
    ``PORT`` (localhost). AgentX needs a stream, so ``udp:`` is refused.
    Raises ValueError saying what is wrong.
    """
    text = (spec or DEFAULT_MASTER).strip()
    if text.startswith("unix:") or text.startswith("/"):
        path = text[5:] if text.startswith("unix:") else text
        if not path.startswith("/"):
            raise ValueError(f"AgentX unix socket path must be absolute, got {path!r}")
        return "unix", path, 0
    if text.lower().startswith("udp"):
        raise ValueError(f"AgentX runs over a stream (unix: or tcp:), not UDP: {text!r}")
    if text.lower().startswith("tcp:"):
        text = text[4:]
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "localhost"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"AgentX address {spec!r}: expected unix:/PATH or tcp:HOST:PORT")
    return "tcp", host, int(port)
