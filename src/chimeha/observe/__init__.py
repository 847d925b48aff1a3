"""Operating chime-ha: what is it doing, and why did it fail over?

The daemon makes itself observable with one call::

    observer = chimeha.observe.attach(daemon, control_path, metrics_addr, journal_path)
    await observer.start()           # control socket, /metrics + status page, dump signals
    observer.ready()                 # READY=1 to systemd once the instances run
    ...
    observer.on_transition(event)    # for every vrrp StateChanged
    ...
    await observer.stop()

Or, for a ``runtime.Daemon`` (which has ``state_hooks`` and ``event_hooks``),
all of that in one step::

    observer = await chimeha.observe.attach_running(daemon, control_path, metrics_addr, journal_path)
    ...
    await observer.close()           # STOPPING=1, unhook, close everything

``daemon.snapshot()`` must return the dict described in :mod:`.schema` (and
docs/operations.md). Submodules: ``schema``, ``journal``, ``metrics``,
``http`` (status page), ``control`` (unix socket server and client),
``dumps`` (keepalived's SIGUSR1/SIGUSR2/JSON files), ``sdnotify``.
"""

from __future__ import annotations

from typing import Any

DEFAULT_CONTROL_PATH = "/run/chime-ha/control.sock"
DEFAULT_JOURNAL_PATH = "/var/lib/chime-ha/journal.jsonl"


def attach(daemon: Any, control_path: str | None = DEFAULT_CONTROL_PATH, metrics_addr: str | None = None,
           journal_path: str | None = DEFAULT_JOURNAL_PATH, **options: Any):
    """Build the :class:`~chimeha.observe.service.Observer` for ``daemon`` (not started yet).

    ``options`` go to the Observer: ``dump_paths`` (a :class:`.dumps.DumpPaths`),
    ``watch_interval`` (s, default 0.5), ``signals`` (install the dump signal
    handlers, default True), ``journal_size`` (entries kept in memory, 1000).
    """
    from .service import Observer

    return Observer(daemon, control_path=control_path, metrics_addr=metrics_addr,
                    journal_path=journal_path, **options)


async def attach_running(daemon: Any, control_path: str | None = DEFAULT_CONTROL_PATH,
                         metrics_addr: str | None = None, journal_path: str | None = DEFAULT_JOURNAL_PATH,
                         **options: Any):
    """:func:`attach`, hook into ``daemon.state_hooks`` / ``event_hooks`` and start.

    May be called before ``daemon.start()`` (then the first transitions are
    journaled too). READY=1 goes to systemd as soon as the snapshot reports
    ``node.started_at`` (checked on every transition and watcher tick), so
    readiness means "instances running", not "observer attached"; calling
    ``observer.ready()`` sends it at once. Returns the started Observer;
    ``await observer.close()`` undoes all of it. Raises what
    :meth:`Observer.start` raises (nothing is left hooked or open then).
    """
    observer = attach(daemon, control_path, metrics_addr, journal_path, **options)
    observer.auto_ready = True
    await observer.start()
    observer.hook()
    return observer
