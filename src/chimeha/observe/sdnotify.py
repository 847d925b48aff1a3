"""systemd readiness notification (sd_notify) without libsystemd.

systemd passes ``NOTIFY_SOCKET`` to a ``Type=notify`` service: a unix datagram
socket path (or, with a leading ``@``, an abstract one). One datagram of
newline-separated ``KEY=VALUE`` lines reports state: ``READY=1`` when started,
``RELOADING=1`` plus ``MONOTONIC_USEC`` while reloading, ``STOPPING=1``, and a
free-form ``STATUS=`` line that ``systemctl status`` shows. Outside systemd the
variable is unset and every call is a cheap no-op.
"""

from __future__ import annotations

import os
import socket
import time


def notify(*lines: str, env: dict[str, str] | None = None) -> bool:
    """Send ``lines`` to systemd; True if a notification socket took them.

    Never raises: a daemon must not die because its supervisor went away.
    """
    path = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not path or not lines:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace
    payload = "\n".join(line.replace("\n", " ") for line in lines).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(payload)
        return True
    except OSError:
        return False


def ready(status: str = "") -> bool:
    """Tell systemd the daemon is up (``READY=1``)."""
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def reloading(status: str = "reloading configuration") -> bool:
    """Tell systemd a reload started (``Type=notify-reload`` semantics; older systemd ignores it)."""
    usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={status}")


def stopping(status: str = "stopping") -> bool:
    return notify("STOPPING=1", f"STATUS={status}")


def status(text: str) -> bool:
    return notify(f"STATUS={text}")
