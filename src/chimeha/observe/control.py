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
import socket
import stat
import struct
from typing import Any, Iterator, Protocol

from .journal import seq_of

log = logging.getLogger(__name__)

DEFAULT_CONTROL_PATH = "/run/chime-ha/control.sock"
COMMANDS = ("status", "journal", "reload", "dump")
MAX_LINE = 64 * 1024


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
    """Serves :data:`COMMANDS` for ``target`` on a root-only unix socket at ``path``."""

    def __init__(self, path: str, target: ControlTarget):
        self.path = path
        self.target = target
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._allowed_uids = {0, os.geteuid()}

    async def start(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        self._clear_stale()
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_LINE)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

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
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self._tasks.add(task)
        try:
            uid = _peer_uid(writer)
            if uid is not None and uid not in self._allowed_uids:
                writer.write(_dumps({"ok": False, "error": "permission denied: the control socket is for root only"}))
                await writer.drain()
                return
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE
                    writer.write(_dumps({"ok": False, "error": f"request longer than {MAX_LINE} bytes"}))
                    await writer.drain()
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                following = await self._handle(line, writer)
                if following:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # the server outlives any one bad conversation
            log.exception("control connection failed")
        finally:
            if task:
                self._tasks.discard(task)
            writer.close()

    async def _handle(self, line: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True when the connection turned into a journal follow."""
        try:
            req = json.loads(line)
        except ValueError as exc:
            writer.write(_dumps({"ok": False, "error": f"request is not JSON: {exc}"}))
            await writer.drain()
            return False
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            writer.write(_dumps({"ok": False, "error": 'request must be a JSON object with a "cmd" string'}))
            await writer.drain()
            return False
        cmd = req["cmd"]
        try:
            if cmd == "status":
                reply: dict[str, Any] = {"ok": True, "result": self.target.status()}
            elif cmd == "journal":
                limit = _positive_int(req.get("limit"), "limit")
                instance = req.get("instance")
                if instance is not None and not isinstance(instance, str):
                    raise ValueError(f"'instance' must be a string, got {instance!r}")
                if req.get("follow"):
                    await self._follow(writer, limit, instance)
                    return True
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
        writer.write(_dumps(reply))
        await writer.drain()
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
            writer.write(_dumps({"ok": True, "result": {"entries": backlog}, "follow": True}))
            await writer.drain()
            while True:
                entry = await queue.get()
                if seq_of(entry) <= last_seq:
                    continue
                writer.write(_dumps({"entry": entry}))
                await writer.drain()
        finally:
            unsubscribe()


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
            sock.connect(self.path)
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
