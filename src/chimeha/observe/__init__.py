"""Operating chime-ha: what is it doing, and why did it fail over?

The daemon makes itself observable with one call::

    observer = chimeha.observe.attach(daemon, control_path, metrics_addr, journal_path)
    await observer.start()           # control socket, /metrics + status page, dump signals
    observer.ready()                 # READY=1 to systemd once the instances run
    ...
    observer.on_transition(event)    # for every vrrp StateChanged
    ...
    await observer.stop()

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
