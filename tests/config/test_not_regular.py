"""A config file or include that is not a regular non-executable file is refused, never read.

keepalived 2.2.7 skips such a file ("is not a regular non-executable file -
skipping", measured: ``keepalived -t`` exits 0).  chime-ha warns at the
include's FILE:LINE and goes on; a main file of that kind is an error (there
would be nothing to run).  Above all, a FIFO never hangs the reader.
"""

from __future__ import annotations

import os
import threading

import pytest

from chimeha.config import load

BODY = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 5\n  virtual_ipaddress {\n    10.0.0.1/24\n  }\n}\n"


def _load_bounded(path: str, seconds: float = 10.0):
    """load() in a thread; fails the test instead of hanging if it blocks."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", load(path)), daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        # Unblock the reader (a writer opens the FIFO) so the thread can end, then fail.
        pytest.fail(f"load({path}) blocked for {seconds} s")
    return out["r"]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "some.fifo"
    os.mkfifo(path)
    return path


def test_include_of_a_fifo_is_skipped_with_a_warning_at_the_include(tmp_path, fifo):
    main = tmp_path / "keepalived.conf"
    main.write_text(f"include {fifo}\n" + BODY)
    r = _load_bounded(str(main))
    assert r.ok and r.config is not None and list(r.config.instances) == ["VI_1"]
    (d,) = [d for d in r.diagnostics if d.code == "not-regular-file"]
    assert (d.file, d.line, d.severity) == (str(main), 1, "warning")
    assert "a FIFO" in d.message and str(fifo) in d.message


def test_main_file_that_is_a_fifo_is_an_error(fifo):
    r = _load_bounded(str(fifo))
    assert not r.ok and r.config is None
    assert [(d.code, d.severity) for d in r.diagnostics] == [("not-regular-file", "error")]


def test_glob_include_skips_fifo_directory_and_executable_but_reads_the_rest(tmp_path):
    d = tmp_path / "conf.d"
    d.mkdir()
    os.mkfifo(d / "a.fifo")
    (d / "sub").mkdir()
    exe = d / "run.conf"
    exe.write_text("vrrp_instance X {\n}\n")
    exe.chmod(0o755)
    (d / "vi.conf").write_text(BODY)
    main = tmp_path / "keepalived.conf"
    main.write_text(f"include {d}/*\n")
    r = _load_bounded(str(main))
    assert list(r.config.instances) == ["VI_1"]
    skipped = sorted(x.message.split(" ")[0] for x in r.diagnostics if x.code == "not-regular-file")
    assert skipped == sorted(str(d / n) for n in ("a.fifo", "run.conf", "sub"))
    assert all(x.line == 1 and x.file == str(main) for x in r.diagnostics if x.code == "not-regular-file")


def test_device_include_is_skipped(tmp_path):
    main = tmp_path / "keepalived.conf"
    main.write_text("include /dev/zero\n" + BODY)
    r = _load_bounded(str(main))
    (d,) = [d for d in r.diagnostics if d.code == "not-regular-file"]
    assert "character device" in d.message and r.ok
