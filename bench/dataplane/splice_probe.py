"""Probe, not a product: TCP relayed inside the kernel (BPF sockhash + sk_skb verdict program).

Why it exists: the proxy data plane's keep-alive rate at -c32 stays behind HAProxy's
because one relay thread does all the ``recv``/``send`` work (BENCHMARKS.md). Kernel
splicing moves the per-request work out of the process: once a client connection and its
real-server connection are paired in a sockhash, a verdict program redirects every
received segment to the other socket and the relay only sees connects and FINs. This
script measures what that would give, and shows why chime-ha does not use it (yet):

* ``relay LISTEN SERVER [SERVER ...]``: a minimal round-robin relay that splices every
  connection (run.py's setup "kernel splice (probe)" starts it);
* ``memory [--seconds N]``: one spliced pair on loopback whose server reads nothing; the
  client keeps sending. The kernel's redirect queue has no back-pressure: what the client
  sends is queued in kernel memory, unbounded (MemAvailable is printed before and after),
  a denial of service for a director in front of a slow real server or a slow client.

The relay keeps the byte order of each direction: what arrived before the pair was made is
read and forwarded in userspace first, then the verdict program takes over; segments that
arrive in between stay in the socket's receive queue and ``SO_RCVLOWAT`` makes the kernel
run the verdict on them (in order, from the queue's head). A FIN is passed on only once
every byte before it reached the other socket (``TCP_INFO`` received bytes against the
other side's acked plus queued bytes).

Needs root (CAP_BPF, CAP_NET_ADMIN) and a kernel with CONFIG_BPF_STREAM_PARSER (sockmap).
"""

from __future__ import annotations

import argparse
import array
import ctypes
import errno
import fcntl
import itertools
import os
import platform
import select
import socket
import struct
import sys
import time

# bpf(2): the commands and types used here (linux/bpf.h)
NR_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_PROG_LOAD, BPF_PROG_ATTACH = 0, 2, 5, 8
BPF_MAP_TYPE_SOCKHASH = 18
BPF_PROG_TYPE_SK_SKB = 14
BPF_SK_SKB_VERDICT = 38
HELPER_GET_SOCKET_COOKIE, HELPER_SK_REDIRECT_HASH = 46, 72
SO_COOKIE = 57
TCP_INFO_BYTES_ACKED = 120  # offsets in struct tcp_info (u64 tcpi_bytes_acked, tcpi_bytes_received)
SIOCOUTQ = 0x5411
RDHUP = getattr(select, "EPOLLRDHUP", 0x2000)

_libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, 128)
    r = _libc.syscall(NR_BPF, cmd, buf, len(buf))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return r


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


class Splicer:
    """A sockhash keyed by a socket's cookie whose value is the socket to relay it to."""

    def __init__(self, max_entries: int = 65536):
        if NR_BPF is None:
            raise OSError(f"bpf syscall number unknown on {platform.machine()}")
        self.map = bpf(BPF_MAP_CREATE, struct.pack("IIIII", BPF_MAP_TYPE_SOCKHASH, 8, 4, max_entries, 0))
        # r6 = skb; key = cookie(skb's socket) on the stack; redirect to peers[key], egress;
        # no entry: SK_PASS (the data stays with the receiving socket, for userspace)
        prog = b"".join([
            insn(0xBF, 6, 1),                                # r6 = r1
            insn(0x85, imm=HELPER_GET_SOCKET_COOKIE),        # r0 = cookie
            insn(0x7B, 10, 0, -8),                           # *(u64 *)(r10 - 8) = r0
            insn(0xBF, 1, 6),                                # r1 = skb
            insn(0x18, 2, 1, imm=self.map), insn(0),         # r2 = map (ld_imm64, pseudo map fd)
            insn(0xBF, 3, 10), insn(0x07, 3, imm=-8),        # r3 = &key
            insn(0xB7, 4, imm=0),                            # r4 = 0: to the peer's egress
            insn(0x85, imm=HELPER_SK_REDIRECT_HASH),         # r0 = SK_PASS (redirect set) / SK_DROP
            insn(0x55, 0, off=1, imm=0),                     # if r0 != 0: return r0
            insn(0xB7, 0, imm=1),                            # r0 = SK_PASS
            insn(0x95),                                      # return r0
        ])
        self._keep = [ctypes.create_string_buffer(b"GPL"), ctypes.create_string_buffer(prog, len(prog))]
        lic, code = (ctypes.addressof(b) for b in self._keep)
        self.prog = bpf(BPF_PROG_LOAD, struct.pack("=IIQQIIQII16sII", BPF_PROG_TYPE_SK_SKB, len(prog) // 8, code,
                                                   lic, 0, 0, 0, 0, 0, b"chimeha_splice", 0, BPF_SK_SKB_VERDICT))
        bpf(BPF_PROG_ATTACH, struct.pack("IIII", self.map, self.prog, BPF_SK_SKB_VERDICT, 0))

    def _put(self, key_sock: socket.socket, value_sock: socket.socket) -> None:
        key = ctypes.create_string_buffer(key_sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), 8)
        value = ctypes.create_string_buffer(struct.pack("I", value_sock.fileno()), 4)
        bpf(BPF_MAP_UPDATE_ELEM, struct.pack("IIQQQ", self.map, 0, ctypes.addressof(key), ctypes.addressof(value), 0))

    def pair(self, a: socket.socket, b: socket.socket) -> None:
        """From now on what ``a`` receives leaves through ``b`` and the other way round."""
        self._put(a, b)
        self._put(b, a)
        for s in (a, b):  # run the verdict on what is queued already (arrived before the pair)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


def received(s: socket.socket) -> int:
    """Bytes received on ``s`` (a FIN counts one)."""
    return struct.unpack_from("Q", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), TCP_INFO_BYTES_ACKED + 8)[0]


def written(s: socket.socket) -> int:
    """Bytes written into ``s`` so far: acknowledged by its peer plus still queued."""
    acked = struct.unpack_from("Q", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), TCP_INFO_BYTES_ACKED)[0]
    q = array.array("i", [0])
    fcntl.ioctl(s.fileno(), SIOCOUTQ, q)
    return acked + q[0]


class Pair:
    """A client connection and its real-server connection."""

    def __init__(self, relay: "Relay", c: socket.socket, server: tuple[str, int]):
        self.relay, self.c = relay, c
        self.spliced = self.user = False
        self.u = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        self.eof = {}        # fd -> True once its FIN arrived
        self.shut = set()    # fds shut for writing
        self.user_in = {c.fileno(): 0, self.u.fileno(): 0}   # bytes userspace read from it
        self.user_out = {c.fileno(): 0, self.u.fileno(): 0}  # bytes userspace wrote into it
        self.u.connect_ex(server)
        relay.watch(self.u.fileno(), self, select.EPOLLOUT)

    def other(self, fd: int) -> socket.socket:
        return self.u if fd == self.c.fileno() else self.c

    def sock(self, fd: int) -> socket.socket:
        return self.c if fd == self.c.fileno() else self.u

    def event(self, fd: int, ev: int) -> None:
        if ev & select.EPOLLERR:
            # a FIN that arrives alone is a zero-length segment: the verdict redirects it too and
            # the kernel's send of it reports EPIPE on the other socket (reading SO_ERROR clears
            # it); the FIN itself is seen as RDHUP and passed on by drain()
            err = self.sock(fd).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not (self.spliced and err == errno.EPIPE):
                self.close()
                return
            ev &= ~select.EPOLLERR
        if self.user:
            self.copy(fd)
        elif not self.spliced:
            if ev & select.EPOLLOUT:
                self.connected()
        elif ev & (RDHUP | select.EPOLLHUP):  # HUP: its FIN after ours (both directions shut)
            self.eof[fd] = True
            self.relay.ep.modify(fd, 0)
            self.relay.draining.add(self)

    def connected(self) -> None:
        c, u = self.c, self.u
        if u.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.close()
            return
        # what the client sent before the real server accepted goes first, from userspace
        while not self.eof and self.copy(c.fileno()):
            pass
        try:
            if self.eof:
                raise OSError("the client's FIN came first")
            self.relay.splicer.pair(c, u)
        except OSError:  # a side is no longer ESTABLISHED (sockmap takes only those): userspace
            self.user = True
            self.relay.counts["userspace"] += 1
            self.relay.watch(c.fileno(), self, 0 if c.fileno() in self.eof else select.EPOLLIN)
            self.relay.ep.modify(u.fileno(), select.EPOLLIN)
            return
        self.spliced = True
        self.relay.counts["spliced"] += 1
        self.relay.watch(c.fileno(), self, RDHUP)
        self.relay.ep.modify(u.fileno(), RDHUP)

    def copy(self, fd: int) -> bool:
        """Userspace relaying (before the splice, or instead of it): one read from ``fd``."""
        src, dst = self.sock(fd), self.other(fd)
        try:
            data = src.recv(65536)
        except BlockingIOError:
            return False
        if data:
            self.user_in[fd] += len(data)
            dst.setblocking(True)
            dst.sendall(data)
            dst.setblocking(False)
            self.user_out[dst.fileno()] += len(data)
            return True
        self.eof[fd] = True
        dst.shutdown(socket.SHUT_WR)
        self.shut.add(dst.fileno())
        if fd in self.relay.pairs:
            self.relay.ep.modify(fd, 0)
        if len(self.shut) == 2:
            self.close()
        return False

    def drain(self) -> bool:
        """Pass on FINs whose bytes are all out; True when the pair is done."""
        for fd in list(self.eof):
            dst = self.other(fd)
            if dst.fileno() in self.shut:
                continue
            spliced = received(self.sock(fd)) - 1 - self.user_in[fd]
            if written(dst) - self.user_out[dst.fileno()] >= spliced:
                dst.shutdown(socket.SHUT_WR)
                self.shut.add(dst.fileno())
        if len(self.shut) == 2:
            self.close()
            return True
        return False

    def close(self) -> None:
        self.relay.draining.discard(self)
        for s in (self.c, self.u):
            if s.fileno() >= 0:
                self.relay.pairs.pop(s.fileno(), None)
                s.close()


class Relay:
    def __init__(self, listen: tuple[str, int], servers: list[tuple[str, int]]):
        self.splicer = Splicer()
        self.ep = select.epoll()
        self.pairs: dict[int, Pair] = {}
        self.draining: set[Pair] = set()
        self.counts = {"spliced": 0, "userspace": 0}  # connections
        self.servers = itertools.cycle(servers)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(listen)
        self.lsock.listen(4096)
        self.lsock.setblocking(False)
        self.ep.register(self.lsock.fileno(), select.EPOLLIN)

    def watch(self, fd: int, pair: Pair, events: int) -> None:
        self.pairs[fd] = pair
        self.ep.register(fd, events)

    def run(self) -> None:
        lfd = self.lsock.fileno()
        while True:
            for fd, ev in self.ep.poll(0.001 if self.draining else -1, 256):
                if fd == lfd:
                    self.accept()
                elif fd in self.pairs:
                    self.pairs[fd].event(fd, ev)
            for p in list(self.draining):
                p.drain()

    def accept(self) -> None:
        for _ in range(64):
            try:
                c, _ = self.lsock.accept()
            except BlockingIOError:
                return
            c.setblocking(False)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            Pair(self, c, next(self.servers))


def mem_available_kib() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return -1


def loopback_pair(splicer) -> tuple[socket.socket, socket.socket, socket.socket, socket.socket]:
    """client -> (c, u) -> server on loopback, c and u paired by ``splicer``."""
    srv, lst = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(lst.getsockname())
    c, _ = lst.accept()
    u = socket.create_connection(srv.getsockname())
    server, _ = srv.accept()
    srv.close()
    lst.close()
    splicer.pair(c, u)
    return client, c, u, server


def memory(seconds: float) -> int:
    """One spliced pair on loopback, a server that reads nothing, a client that keeps sending."""
    client, _c, _u, server = loopback_pair(Splicer())
    before = mem_available_kib()
    client.setblocking(False)
    sent, chunk, end = 0, b"z" * 65536, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sent += client.send(chunk)
        except BlockingIOError:
            time.sleep(0.001)
    after = mem_available_kib()
    print(f"the server read nothing; the client sent {sent:,} bytes in {seconds} s")
    print(f"MemAvailable {before:,} KiB before, {after:,} KiB after ({(before - after) / 1024:,.0f} MiB queued in the kernel)")
    got = 0
    server.settimeout(5)
    while got < sent:
        data = server.recv(1 << 20)
        if not data:
            break
        got += len(data)
    print(f"then the server read {got:,} bytes: {'all of them' if got == sent else 'NOT all'}")
    return 0 if got == sent else 1


def addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("relay")
    r.add_argument("listen", type=addr)
    r.add_argument("servers", type=addr, nargs="+")
    m = sub.add_parser("memory")
    m.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    try:
        if args.cmd == "memory":
            return memory(args.seconds)
        relay = Relay(args.listen, args.servers)
    except OSError as e:
        print(f"splice_probe: {e} (needs root and a kernel with sockmap)", file=sys.stderr)
        return 2
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
