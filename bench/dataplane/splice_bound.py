"""Probe, not a product: kernel splicing with a bound on what the kernel queues.

``splice_probe.py memory`` shows the kernel's redirect queue without back-pressure (1.5 GiB
queued in 4 s behind a server that reads nothing). This probe checks the way out before it is
built into the proxy: the verdict program keeps, per direction, the bytes it redirected and
reads the receiving peer's acknowledged bytes (``bpf_skc_to_tcp_sock``; the field's offset
comes from the running kernel's BTF). When the bytes redirected but not yet acknowledged
would pass the bound, it stops redirecting that direction for good: it marks it, pushes the
socket's cookie onto a BPF queue map and returns SK_PASS, so the data waits on the receiving
socket, counted against its receive buffer (the TCP window closes: real back-pressure).
Userspace pops the queue, waits until the peer has taken every redirected byte, and relays
that direction itself, in order.

    sudo .venv/bin/python bench/dataplane/splice_bound.py [--seconds 3] [--bound-mib 4]

prints how much a client could send to a server that reads nothing (bounded now), the kernel
memory that cost, and then checks that every byte reaches the server in order once it reads
(8-byte counters), part by the kernel, the rest by userspace after the fallback.
"""

from __future__ import annotations

import argparse
import ctypes
import socket
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from splice_probe import (  # noqa: E402
    BPF_MAP_CREATE, BPF_MAP_TYPE_SOCKHASH, BPF_MAP_UPDATE_ELEM, BPF_PROG_ATTACH, BPF_PROG_LOAD,
    BPF_PROG_TYPE_SK_SKB, BPF_SK_SKB_VERDICT, HELPER_GET_SOCKET_COOKIE, HELPER_SK_REDIRECT_HASH,
    SO_COOKIE, bpf, insn, loopback_pair, mem_available_kib, written,
)

BPF_MAP_LOOKUP_ELEM, BPF_MAP_LOOKUP_AND_DELETE_ELEM = 1, 21
BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_QUEUE = 1, 22
HELPER_MAP_LOOKUP_ELEM, HELPER_SK_RELEASE, HELPER_MAP_PUSH_ELEM, HELPER_SKC_TO_TCP_SOCK = 1, 86, 87, 137
#: per-direction state, keyed by the receiving socket's cookie
STATE = struct.Struct("QQQI4x")  # redirected bytes, peer's acked bytes at pairing, bound, fell back


def btf_member_offset(struct_name: str, member: str, path: str = "/sys/kernel/btf/vmlinux") -> int:
    """Byte offset of ``struct_name.member`` in the running kernel (its BTF type section)."""
    data = Path(path).read_bytes()
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
    if magic != 0xEB9F:
        raise OSError(f"{path}: not BTF")
    types = data[hdr_len + type_off:hdr_len + type_off + type_len]
    strs = data[hdr_len + str_off:hdr_len + str_off + str_len]

    def name(off: int) -> bytes:
        return strs[off:strs.index(b"\0", off)]

    # bytes after the 12-byte header, per kind (a struct/union member is 12 bytes: name, type, offset)
    extra = {1: lambda v: 4, 3: lambda v: 12, 4: lambda v: 12 * v, 5: lambda v: 12 * v, 6: lambda v: 8 * v,
             13: lambda v: 8 * v, 14: lambda v: 4, 15: lambda v: 12 * v, 17: lambda v: 4, 19: lambda v: 12 * v}
    pos = 0
    while pos < len(types):
        name_off, info, _ = struct.unpack_from("<III", types, pos)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        pos += 12
        if kind == 4 and name(name_off) == struct_name.encode():
            for i in range(vlen):
                m_name, _m_type, m_off = struct.unpack_from("<III", types, pos + 12 * i)
                if name(m_name) == member.encode():
                    return ((m_off & 0xFFFFFF) if kflag else m_off) // 8
        pos += extra.get(kind, lambda v: 0)(vlen)
    raise OSError(f"{struct_name}.{member} not in {path}")


def assemble(items: list) -> bytes:
    """Instructions, ``("label", name)`` and ``("jump", code, dst, src, label)`` into bytecode."""
    labels, n = {}, 0
    for it in items:
        if isinstance(it, tuple) and it[0] == "label":
            labels[it[1]] = n
        else:
            n += 2 if isinstance(it, tuple) and it[0] == "ldmap" else 1
    out, n = [], 0
    for it in items:
        if isinstance(it, tuple) and it[0] == "label":
            continue
        if isinstance(it, tuple) and it[0] == "jump":
            _, code, dst, src, target = it
            out.append(insn(code, dst, src, labels[target] - n - 1))
        elif isinstance(it, tuple) and it[0] == "ldmap":  # ld_imm64 of a map fd: two slots
            out += [insn(0x18, it[1], 1, imm=it[2]), insn(0)]
            n += 1
        else:
            out.append(it)
        n += 1
    return b"".join(out)


class BoundedSplicer:
    """A sockhash relay whose verdict program stops redirecting a direction at ``bound`` bytes in flight."""

    def __init__(self, bound: int, max_entries: int = 65536):
        self.bound = bound
        self.peers = bpf(BPF_MAP_CREATE, struct.pack("IIIII", BPF_MAP_TYPE_SOCKHASH, 8, 4, max_entries, 0))
        self.state = bpf(BPF_MAP_CREATE, struct.pack("IIIII", BPF_MAP_TYPE_HASH, 8, STATE.size, max_entries, 0))
        self.fell_back = bpf(BPF_MAP_CREATE, struct.pack("IIIII", BPF_MAP_TYPE_QUEUE, 0, 8, 4096, 0))
        acked = btf_member_offset("tcp_sock", "bytes_acked")
        key = lambda reg: [insn(0xBF, reg, 10), insn(0x07, reg, imm=-8)]  # noqa: E731  reg = &cookie
        prog = assemble([
            insn(0xBF, 6, 1),                                   # r6 = skb
            insn(0x85, imm=HELPER_GET_SOCKET_COOKIE),
            insn(0x7B, 10, 0, -8),                              # cookie on the stack
            ("ldmap", 1, self.state), *key(2), insn(0x85, imm=HELPER_MAP_LOOKUP_ELEM),
            ("jump", 0x15, 0, 0, "pass"),                       # no state: not spliced
            insn(0xBF, 7, 0),                                   # r7 = state
            insn(0x61, 1, 7, 24), ("jump", 0x55, 1, 0, "pass"),  # fell back already
            ("ldmap", 1, self.peers), *key(2), insn(0x85, imm=HELPER_MAP_LOOKUP_ELEM),
            ("jump", 0x15, 0, 0, "pass"),
            insn(0xBF, 8, 0),                                   # r8 = peer (a reference)
            insn(0xBF, 1, 0), insn(0x85, imm=HELPER_SKC_TO_TCP_SOCK),
            ("jump", 0x15, 0, 0, "release_pass"),
            insn(0x79, 9, 0, acked),                            # r9 = peer's bytes_acked
            insn(0xBF, 1, 8), insn(0x85, imm=HELPER_SK_RELEASE),
            insn(0x79, 1, 7, 0), insn(0x79, 2, 7, 8),           # r1 = redirected, r2 = acked at pairing
            insn(0x1F, 9, 2), insn(0x1F, 1, 9),                 # r1 = in flight (redirected - acked since)
            insn(0x61, 2, 6, 0), insn(0x0F, 1, 2),              # + skb->len
            insn(0x79, 3, 7, 16), ("jump", 0x2D, 1, 3, "fall_back"),  # over the bound
            insn(0xDB, 7, 2, 0, 0),                             # atomic: redirected += len
            insn(0xBF, 1, 6), ("ldmap", 2, self.peers), *key(3), insn(0xB7, 4, imm=0),
            insn(0x85, imm=HELPER_SK_REDIRECT_HASH),
            ("jump", 0x55, 0, 0, "out"),
            ("label", "pass"), insn(0xB7, 0, imm=1),            # SK_PASS: the data stays here
            ("label", "out"), insn(0x95),
            ("label", "release_pass"), insn(0xBF, 1, 8), insn(0x85, imm=HELPER_SK_RELEASE),
            ("jump", 0x05, 0, 0, "pass"),
            ("label", "fall_back"), insn(0xB7, 1, imm=1), insn(0x63, 7, 1, 24),  # for good
            ("ldmap", 1, self.fell_back), *key(2), insn(0xB7, 3, imm=0), insn(0x85, imm=HELPER_MAP_PUSH_ELEM),
            ("jump", 0x05, 0, 0, "pass"),
        ])
        self._keep = [ctypes.create_string_buffer(b"GPL"), ctypes.create_string_buffer(prog, len(prog))]
        lic, code = (ctypes.addressof(b) for b in self._keep)
        self.prog = bpf(BPF_PROG_LOAD, struct.pack("=IIQQIIQII16sII", BPF_PROG_TYPE_SK_SKB, len(prog) // 8, code,
                                                   lic, 0, 0, 0, 0, 0, b"chimeha_bsplice", 0, BPF_SK_SKB_VERDICT))
        bpf(BPF_PROG_ATTACH, struct.pack("IIII", self.peers, self.prog, BPF_SK_SKB_VERDICT, 0))

    def _update(self, fd: int, key: bytes, value: bytes) -> None:
        k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
        bpf(BPF_MAP_UPDATE_ELEM, struct.pack("IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))

    def pair(self, a: socket.socket, b: socket.socket) -> None:
        for src, dst in ((a, b), (b, a)):
            cookie = src.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8)
            self._update(self.state, cookie, STATE.pack(0, written(dst), self.bound, 0))
            self._update(self.peers, cookie, struct.pack("I", dst.fileno()))
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)

    def redirected(self, s: socket.socket) -> int:
        """Bytes the kernel redirected from ``s`` to its peer."""
        k, v = ctypes.create_string_buffer(s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), 8), ctypes.create_string_buffer(STATE.size)
        bpf(BPF_MAP_LOOKUP_ELEM, struct.pack("IIQQQ", self.state, 0, ctypes.addressof(k), ctypes.addressof(v), 0))
        return STATE.unpack(v.raw)[0]

    def pop_fallen_back(self) -> list[bytes]:
        """Cookies of the directions that stopped being redirected since the last call."""
        out = []
        v = ctypes.create_string_buffer(8)
        while True:
            try:
                bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, struct.pack("IIQQQ", self.fell_back, 0, 0, ctypes.addressof(v), 0))
            except OSError:
                return out
            out.append(v.raw)


def counters(start: int, n: int) -> bytes:
    return b"".join(struct.pack(">Q", i) for i in range(start, start + n))


def demo(seconds: float, bound: int) -> int:
    splicer = BoundedSplicer(bound)
    client, c, u, server = loopback_pair(splicer)
    before = mem_available_kib()
    client.setblocking(False)
    sent, seq, pending, end = 0, 0, b"", time.monotonic() + seconds
    while time.monotonic() < end:  # the server reads nothing yet
        if not pending:
            pending, seq = counters(seq, 8192), seq + 8192
        try:
            n = client.send(pending)
            sent, pending = sent + n, pending[n:]
        except BlockingIOError:
            time.sleep(0.001)
    after = mem_available_kib()
    fell = splicer.pop_fallen_back()
    print(f"the server read nothing; the client could send {sent:,} bytes in {seconds} s (bound {bound:,});"
          f" MemAvailable {before - after:+,} KiB")
    print(f"fell back to userspace: {'client -> server' if c.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8) in fell else 'nothing'}")
    kernel_part = splicer.redirected(c)
    got = {"bytes": 0, "in_order": True}

    def read_all():
        server.settimeout(5)
        buf, want = bytearray(), 0
        try:
            while got["bytes"] < sent:
                data = server.recv(1 << 20)
                if not data:
                    return
                got["bytes"] += len(data)
                buf += data
                while len(buf) >= 8:
                    got["in_order"] &= struct.unpack_from(">Q", buf)[0] == want
                    want += 1
                    del buf[:8]
        except socket.timeout:
            return

    reader = threading.Thread(target=read_all)
    reader.start()
    c.setblocking(False)
    u.setblocking(False)
    by_user, out = 0, b""
    while reader.is_alive():
        if written(u) >= kernel_part:  # the kernel's part is out: userspace goes on, in order
            if not out:
                try:
                    out = c.recv(1 << 20)
                except BlockingIOError:
                    pass
            if out:
                try:
                    n = u.send(out)
                    by_user, out = by_user + n, out[n:]
                except BlockingIOError:
                    pass
        if pending:
            try:
                pending = pending[client.send(pending):]
            except BlockingIOError:
                pass
        time.sleep(0.0005)
    ok = got["bytes"] >= sent and got["in_order"]
    print(f"then the server read {got['bytes']:,} bytes ({kernel_part:,} relayed by the kernel, {by_user:,} by"
          f" userspace after the fallback): {'all, in order' if ok else 'NOT all in order'}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--bound-mib", type=float, default=4.0)
    args = ap.parse_args()
    try:
        return demo(args.seconds, int(args.bound_mib * (1 << 20)))
    except OSError as e:
        print(f"splice_bound: {e} (needs root, sockmap and BTF)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
