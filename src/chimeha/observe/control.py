"""The control socket: ``chime-ha status``, ``journal``, ``reload`` and ``dump``.

A unix stream socket (default ``/run/chime-ha/control.sock``) created mode 0600
and owned by the daemon's user (root), and every connection's peer credentials
(``SO_PEERCRED``) are checked as well, so only root (or the daemon's own user)
can ask the daemon anything. The protocol is JSON lines: the client writes one
object per request, the server answers one object per line::

    -> {"cmd": "status"}
    <- {"ok": true, "result": {...snapshot...}}
    -> {"cmd": "journal", "limit": 50, "instance": "VI_1", "follow": true}
    <- {"ok": true, "result": {"entries": [...]}, "follow": true}
    <- {"entry": {...}}            (one per new entry, until the client closes)
    -> {"cmd": "reload"}
    <- {"ok": true, "result": {"ok": true, "diagnostics": [], "message": "..."}}
    -> {"cmd": "dump", "kind": "data"}      (kind: data, stats, json or all)
    <- {"ok": true, "result": {"paths": ["/tmp/keepalived.data"]}}
    -> {"cmd": "bogus"}
    <- {"ok": false, "error": "unknown command 'bogus' (expected: status, journal, reload, dump)"}

A bad request gets an error line and the connection stays usable; nothing a
client sends can raise out of the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
import stat
import struct
import time
from typing import Any, Iterator, Protocol

from .journal import seq_of

log = logging.getLogger(__name__)

DEFAULT_CONTROL_PATH = "/run/chime-ha/control.sock"
COMMANDS = ("status", "journal", "reload", "dump")
MAX_LINE = 64 * 1024
#: Connections served at once (each holds a file descriptor the daemon's scripts and sockets need too).
DEFAULT_MAX_CONNECTIONS = 64
#: Seconds a connection may take to send a complete request (or to read an answer) before it is closed.
DEFAULT_IDLE_TIMEOUT = 5.0
LISTEN_BACKLOG = 128
ACCEPT_BACKOFF_MIN = 0.05
ACCEPT_BACKOFF_MAX = 1.0
ACCEPT_LOG_INTERVAL = 10.0


class ControlError(Exception):
    """The control socket could not be used; ``str()`` says why in operator words."""


class ControlTarget(Protocol):
    """What the server asks (implemented by :class:`chimeha.observe.Observer`)."""

    def status(self) -> dict[str, Any]: ...
    def journal_entries(self, limit: int | None, instance: str | None) -> list[dict[str, Any]]: ...
    def subscribe(self, listener) -> Any: ...
    async def reload(self) -> dict[str, Any]: ...
    def dump(self, kind: str) -> list[str]: ...


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), default=str) + "\n").encode()


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def _positive_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"'{what}' must be a non-negative integer, got {value!r}")
    return value


class ControlServer:
    """Serves :data:`COMMANDS` for ``target`` on a root-only unix socket at ``path``.

    Limits, so that a client (or a thousand) cannot starve the daemon of file
    descriptors: at most ``max_connections`` are open at once (when full, the
    connection that has waited longest for a request is closed to make room; a
    follower or a request being answered is never evicted, and if nothing can
    be evicted the newcomer is told so and closed); a connection that sends no
    complete request for ``idle_timeout`` seconds, or does not read its answer
    within that time, is closed. Accept failures (EMFILE: out of descriptors)
    back off up to :data:`ACCEPT_BACKOFF_MAX` seconds and are logged at most
    once per :data:`ACCEPT_LOG_INTERVAL` seconds, without a traceback.
    """

    def __init__(self, path: str, target: ControlTarget, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT):
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        self.path = path
        self.target = target
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._sock: socket.socket | None = None
        self._acceptor: asyncio.Task | None = None
        self._conns: dict[asyncio.Task, _Conn] = {}
        self._allowed_uids = {0, os.geteuid()}
        self._accept_errors = 0  # since the last log line
        self._accept_logged_at: float | None = None
        #: What the limits did since start (tests and the operator's log read these).
        self.stats = {"accepted": 0, "evicted": 0, "refused": 0, "idle_closed": 0, "accept_errors": 0}

    @property
    def connections(self) -> int:
        """Control connections open now."""
        return len(self._conns)

    async def start(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        self._clear_stale()
        self.max_connections = _fit_descriptor_limit(self.max_connections, self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            sock.bind(self.path)
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.setblocking(False)
        self._sock = sock
        self._acceptor = asyncio.get_running_loop().create_task(self._accept_loop(), name="chimeha-control-accept")

    def _clear_stale(self) -> None:
        """Remove a socket left by a dead daemon; refuse to steal a live one's."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
        except OSError:
            os.unlink(self.path)  # nobody listening: a leftover from a crash
            return
        finally:
            probe.close()
        raise ControlError(f"another chime-ha is already listening on {self.path}")

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.cancel()
            await asyncio.gather(self._acceptor, return_exceptions=True)
            self._acceptor = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            tasks = list(self._conns)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    # -- accepting ------------------------------------------------------------
    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = ACCEPT_BACKOFF_MIN
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS/ENOMEM (and anything else the kernel says): the pending
                # connection stays queued; wait, then try again. asyncio's own server would log a
                # traceback for every attempt.
                self._note_accept_error(exc, loop.time())
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, ACCEPT_BACKOFF_MAX)
                continue
            backoff = ACCEPT_BACKOFF_MIN
            self._flush_accept_errors(loop.time())
            self.stats["accepted"] += 1
            if len(self._conns) >= self.max_connections and not self._evict():
                self.stats["refused"] += 1
                _refuse(conn, f"too many control connections ({self.max_connections} busy); try again")
                continue
            try:
                reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_LINE)
            except OSError as exc:
                conn.close()
                self._note_accept_error(exc, loop.time())
                continue
            task = loop.create_task(self._serve(reader, writer), name="chimeha-control-conn")
            self._conns[task] = _Conn(writer, loop.time())
            task.add_done_callback(self._release)

    def _release(self, task: asyncio.Task) -> None:
        self._conns.pop(task, None)  # the slot is free (an evicted one was freed already)

    def _evict(self) -> bool:
        """Close the connection that has waited longest for a request; False if every one is busy."""
        waiting = [(c.since, t) for t, c in self._conns.items() if c.waiting and not c.evicted]
        if not waiting:
            return False
        _, task = min(waiting, key=lambda item: item[0])
        conn = self._conns.pop(task)  # its slot is free now, its task ends on the next wakeup
        conn.evicted = True
        _say(conn.writer, f"closing: too many control connections (limit {self.max_connections})")
        task.cancel()
        self.stats["evicted"] += 1
        return True

    def _note_accept_error(self, exc: OSError, now: float) -> None:
        self.stats["accept_errors"] += 1
        self._accept_errors += 1
        if self._accept_logged_at is None or now - self._accept_logged_at >= ACCEPT_LOG_INTERVAL:
            log.error("control socket %s: cannot accept connections: %s (%d time(s); backing off, "
                      "logged at most every %.0f s)", self.path, exc.strerror or exc, self._accept_errors,
                      ACCEPT_LOG_INTERVAL)
            self._accept_logged_at = now
            self._accept_errors = 0

    def _flush_accept_errors(self, now: float) -> None:
        if self._accept_errors:
            log.warning("control socket %s: accepting again (%d more accept failure(s) since the last message)",
                        self.path, self._accept_errors)
            self._accept_errors = 0
            self._accept_logged_at = None

    # -- one connection -------------------------------------------------------
    async def _write(self, writer: asyncio.StreamWriter, obj: Any) -> None:
        """Send one answer line; a client that does not read it within the idle timeout is dropped."""
        writer.write(_dumps(obj))
        await asyncio.wait_for(writer.drain(), self.idle_timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        try:
            uid = _peer_uid(writer)
            if uid is not None and uid not in self._allowed_uids:
                await self._write(writer, {"ok": False, "error": "permission denied: the control socket is for root only"})
                return
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), self.idle_timeout)
                except asyncio.TimeoutError:
                    self.stats["idle_closed"] += 1
                    await self._write(writer, {"ok": False, "error": f"no complete request within "
                                                                     f"{self.idle_timeout:g} s; closing"})
                    return
                except ValueError:  # longer than MAX_LINE
                    await self._write(writer, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                conn = self._conns.get(task)
                if conn is not None:
                    conn.waiting = False
                following = await self._handle(line, writer)
                if following:
                    return
                if conn is not None:
                    conn.waiting, conn.since = True, asyncio.get_running_loop().time()
        except (ConnectionError, asyncio.CancelledError, asyncio.TimeoutError):
            pass
        except Exception:  # the server outlives any one bad conversation
            log.exception("control connection failed")
        finally:
            writer.close()

    async def _handle(self, line: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True when the connection turned into a journal follow."""
        try:
            req = json.loads(line)
        except ValueError as exc:
            await self._write(writer, {"ok": False, "error": f"request is not JSON: {exc}"})
            return False
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            await self._write(writer, {"ok": False, "error": 'request must be a JSON object with a "cmd" string'})
            return False
        cmd = req["cmd"]
        follow = None
        try:
            if cmd == "status":
                reply: dict[str, Any] = {"ok": True, "result": self.target.status()}
            elif cmd == "journal":
                limit = _positive_int(req.get("limit"), "limit")
                instance = req.get("instance")
                if instance is not None and not isinstance(instance, str):
                    raise ValueError(f"'instance' must be a string, got {instance!r}")
                if req.get("follow"):
                    follow = (limit, instance)  # answered below, outside this try
                    reply = {}
                else:
                    reply = {"ok": True, "result": {"entries": self.target.journal_entries(limit, instance)}}
            elif cmd == "reload":
                reply = {"ok": True, "result": await self.target.reload()}
            elif cmd == "dump":
                kind = req.get("kind", "all")
                reply = {"ok": True, "result": {"paths": self.target.dump(kind)}}
            else:
                reply = {"ok": False, "error": f"unknown command {cmd!r} (expected: {', '.join(COMMANDS)})"}
        except (ValueError, OSError) as exc:
            reply = {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control command %s failed", cmd)
            reply = {"ok": False, "error": f"{cmd} failed inside the daemon: {exc!r}"}
        if follow is not None:
            # Outside the try: a follower that stops reading (TimeoutError, an OSError) is dropped, not answered.
            await self._follow(writer, *follow)
            return True
        await self._write(writer, reply)
        return False

    async def _follow(self, writer: asyncio.StreamWriter, limit: int | None, instance: str | None) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10000)

        def listener(entry: dict[str, Any]) -> None:
            if instance and entry.get("instance") != instance:
                return
            try:
                queue.put_nowait(entry)
            except asyncio.QueueFull:
                pass  # a follower that stopped reading loses entries, the daemon does not stall

        # Subscribe before reading the backlog so that nothing falls in between.
        unsubscribe = self.target.subscribe(listener)
        try:
            backlog = self.target.journal_entries(limit, instance)
            last_seq = max((seq_of(e) for e in backlog), default=-1)
            await self._write(writer, {"ok": True, "result": {"entries": backlog}, "follow": True})
            while True:
                entry = await queue.get()
                if seq_of(entry) <= last_seq:
                    continue
                await self._write(writer, {"entry": entry})
        finally:
            unsubscribe()


def _fit_descriptor_limit(wanted: int, path: str) -> int:
    """At most a quarter of RLIMIT_NOFILE for control connections: scripts, sockets and netlink need the rest."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY or wanted <= soft // 4:
        return wanted
    fitted = max(1, soft // 4)
    log.warning("control socket %s: serving %d connection(s) at once, not %d (the descriptor limit is %d)",
                path, fitted, wanted, soft)
    return fitted


class _Conn:
    """One open control connection: ``waiting`` for a request since ``since`` (loop time)."""

    __slots__ = ("writer", "since", "waiting", "evicted")

    def __init__(self, writer: asyncio.StreamWriter, since: float):
        self.writer, self.since, self.waiting, self.evicted = writer, since, True, False


def _say(writer: asyncio.StreamWriter, message: str) -> None:
    """Best effort: one error line to a connection about to be closed (never blocks)."""
    try:
        writer.write(_dumps({"ok": False, "error": message}))
    except (OSError, RuntimeError):
        pass


def _refuse(conn: socket.socket, message: str) -> None:
    try:
        conn.setblocking(False)
        conn.send(_dumps({"ok": False, "error": message}))
    except OSError:
        pass
    finally:
        conn.close()


# -- client (synchronous: the CLI needs no event loop) -------------------

class ControlClient:
    """Talks to a running daemon's control socket; errors are :class:`ControlError`."""

    def __init__(self, path: str = DEFAULT_CONTROL_PATH, timeout: float | None = 30.0):
        self.path = path
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            self._connect_patiently(sock)
        except ControlError:
            sock.close()
            raise
        except FileNotFoundError:
            sock.close()
            raise ControlError(f"chime-ha is not running: no control socket at {self.path} "
                               "(start it with `chime-ha run`, or pass --control PATH)") from None
        except PermissionError:
            sock.close()
            raise ControlError(f"permission denied on {self.path}: the control socket is for root only (try sudo)") from None
        except ConnectionRefusedError:
            sock.close()
            raise ControlError(f"nothing is listening on {self.path}: chime-ha is not running (stale socket)") from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        return sock

    def _connect_patiently(self, sock: socket.socket) -> None:
        """connect(); a full listen backlog (EAGAIN: the daemon is busy accepting) is retried until the timeout."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                sock.connect(self.path)
                return
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise ControlError(f"{self.path}: the daemon accepts no connection (its queue stayed full "
                                       f"for {self.timeout:g} s)") from None
                time.sleep(0.005)

    @staticmethod
    def _send(sock: socket.socket, request: dict[str, Any]) -> None:
        try:
            sock.sendall(_dumps(request))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon hung up first (e.g. refused us): its reason is waiting to be read
        except socket.timeout:
            raise ControlError("the daemon did not accept the request in time") from None

    @staticmethod
    def _lines(sock: socket.socket) -> Iterator[dict[str, Any]]:
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise ControlError("the daemon did not answer in time") from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if buf.strip():
                    raise ControlError("the daemon closed the connection mid-answer")
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    raise ControlError("the daemon sent an answer that is not JSON") from None
                if not isinstance(msg, dict):
                    raise ControlError("the daemon sent an answer that is not a JSON object")
                yield msg

    def request(self, cmd: str, **params: Any) -> Any:
        """Send one command and return its ``result``; a daemon-side error raises ControlError."""
        with self._connect() as sock:
            self._send(sock, {"cmd": cmd, **params})
            for msg in self._lines(sock):
                if not msg.get("ok"):
                    raise ControlError(str(msg.get("error", "the daemon refused the request")))
                return msg.get("result")
        raise ControlError("the daemon closed the connection without answering")

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def journal(self, limit: int | None = None, instance: str | None = None) -> list[dict[str, Any]]:
        return self.request("journal", limit=limit, instance=instance)["entries"]

    def follow(self, limit: int | None = None, instance: str | None = None,
               idle_timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the backlog then every new entry until the daemon goes away.

        By default it waits for new entries for as long as it takes;
        ``idle_timeout`` raises ControlError after that many quiet seconds.
        """
        sock = self._connect()
        sock.settimeout(idle_timeout)
        try:
            self._send(sock, {"cmd": "journal", "limit": limit, "instance": instance, "follow": True})
            lines = self._lines(sock)
            first = next(lines, None)
            if first is None:
                raise ControlError("the daemon closed the connection without answering")
            if not first.get("ok"):
                raise ControlError(str(first.get("error", "the daemon refused the request")))
            yield from first.get("result", {}).get("entries", [])
            for msg in lines:
                if isinstance(msg.get("entry"), dict):
                    yield msg["entry"]
        finally:
            sock.close()

    def reload(self) -> dict[str, Any]:
        return self.request("reload")

    def dump(self, kind: str = "all") -> list[str]:
        return self.request("dump", kind=kind)["paths"]
