"""runtime.reload.load_config: the parse runs off the loop without garbage-collector pauses.

The behaviour that matters (an 8 MB reload with a backup watching, no takeover)
is tests/system/test_reload_system.py; these check the mechanism's promises:
the collector's state is restored, the new configuration is frozen out of
later collections, a FIFO is refused without blocking.
"""

from __future__ import annotations

import gc
import os

import pytest

from chimeha.runtime.reload import ReloadRefused, load_config

BODY = "vrrp_instance VI_1 {\n interface lo\n virtual_router_id 5\n virtual_ipaddress {\n  10.0.0.1/24\n }\n}\n"


@pytest.mark.parametrize("enabled", [True, False])
async def test_collector_state_is_restored(tmp_path, enabled):
    path = tmp_path / "k.conf"
    path.write_text(BODY + "".join(f"vrrp_script s{i} {{\n script /bin/true\n}}\n" for i in range(200)))
    (gc.enable if enabled else gc.disable)()
    try:
        frozen = gc.get_freeze_count()
        result = await load_config(str(path))
        assert result.ok and len(result.config.vrrp_scripts) == 200
        assert gc.isenabled() is enabled
        # the new configuration's objects are out of every later collection's walk
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        gc.enable()


async def test_a_fifo_main_file_is_refused_not_waited_for(tmp_path):
    fifo = tmp_path / "k.conf"
    os.mkfifo(fifo)
    result = await load_config(str(fifo), timeout=5.0)  # a hang would raise ReloadRefused after 5 s
    assert not result.ok and [d.code for d in result.errors] == ["not-regular-file"]


async def test_a_slow_read_is_refused_after_the_timeout(tmp_path, monkeypatch):
    import threading

    from chimeha import config

    gate = threading.Event()
    monkeypatch.setattr(config, "load", lambda path: gate.wait(10))
    try:
        with pytest.raises(ReloadRefused, match="took more than 0.2 s"):
            await load_config(str(tmp_path / "k.conf"), timeout=0.2)
    finally:
        gate.set()
