"""The status page rendered by a real browser (Debian's headless Chromium).

The page is served by a real Observer over HTTP on 127.0.0.1 from a fake
snapshot (the daemon-backed version is in test_observe_system.py).
"""

import os
import re
import shutil
import subprocess
import time

import pytest

from chimeha.observe import attach

from chimeha.vrrp.events import SplitBrain

from observe_fakes import Event, FakeDaemon, ThreadedObserver
from observe_png import count_colour, read_png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# At 1280x1000 the instance cards (two rows: VI_1 and VI_2, then VI_3) end near y=575 and the
# timeline's state strips start near y=620.
CARDS_BOTTOM = 590
MASTER, BACKUP, FAULT, SPLIT = (0x1A, 0x7F, 0x37), (0x09, 0x69, 0xDA), (0xCF, 0x22, 0x2E), (0xBF, 0x00, 0xBF)


def chromium(url: str, profile: str, *extra: str) -> subprocess.CompletedProcess:
    if not CHROMIUM:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but chromium is not installed (apt-get install chromium)", pytrace=False)
        pytest.skip("needs chromium (apt-get install chromium)")
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--window-size=1280,1000", "--virtual-time-budget=4000", *extra, url]
    return subprocess.run(argv, capture_output=True, timeout=90, cwd=profile)


def screenshot(url, tmp_path, name):
    path = tmp_path / name
    proc = chromium(url, str(tmp_path / "profile"), f"--screenshot={path}")
    assert path.exists(), proc.stderr.decode()[-2000:]
    width, height, rows = read_png(path.read_bytes())
    assert (width, height) == (1280, 1000)
    return rows


def badge_box(rows, rgb):
    """Bounding box (x0, y0, x1, y1) of the pixels of colour ``rgb``."""
    xs, ys = [], []
    for y, row in enumerate(rows):
        for x in range(0, len(row), 3):
            if abs(row[x] - rgb[0]) <= 6 and abs(row[x + 1] - rgb[1]) <= 6 and abs(row[x + 2] - rgb[2]) <= 6:
                xs.append(x // 3)
                ys.append(y)
    return (min(xs), min(ys), max(xs), max(ys)) if xs else None


@pytest.fixture
def page(tmp_path):
    daemon = FakeDaemon()
    insts = daemon.snap["instances"]
    insts["VI_1"]["split_brain"] = {"active": True, "peer": "192.168.231.12", "since": time.time() - 5}
    insts["VI_3"] = {"name": "VI_3", "state": "FAULT", "vrid": 53, "interface": "ens192", "base_priority": 100,
                     "last_transition": {"at": time.time() - 60, "from": "BACKUP", "to": "FAULT",
                                         "reason": "interface ens192 is down"}}
    obs = attach(daemon, control_path=None, metrics_addr="127.0.0.1:0", journal_path=None, signals=False)
    (tmp_path / "profile").mkdir()
    with ThreadedObserver(obs) as threaded:
        threaded.call(obs.on_transition, Event("VI_3", "BACKUP", "FAULT", "interface ens192 is down", time.time() - 60))
        # The core reports the split brain the snapshot shows (the timeline entry comes from the event).
        threaded.call(obs.on_event, SplitBrain("VI_1", "192.168.231.12", 255, 255,
                                               "192.168.231.12 is also MASTER at equal priority 255", time.time() - 5))
        yield threaded, daemon


def test_dom_shows_states_reasons_and_servers(page, tmp_path):
    threaded, _ = page
    proc = chromium(threaded.observer.http.url + "/", str(tmp_path / "profile"), "--dump-dom")
    dom = proc.stdout.decode()
    assert 'data-loaded="1"' in dom, proc.stderr.decode()[-2000:]  # the script ran and drew the page
    states = dict(re.findall(r'<span class="badge [^"]*" data-instance="([^"]+)" data-state="([^"]+)"', dom))
    assert states == {"VI_1": "SPLIT_BRAIN", "VI_2": "BACKUP", "VI_3": "FAULT"}
    assert "with 192.168.231.12 since" in dom
    assert "interface ens192 is down" in dom  # the journal timeline
    assert 'data-rs="192.168.231.12:8801"' in dom and "refused" in dom
    assert "chk_server" in dom


def test_screenshot_badges_have_the_state_colours(page, tmp_path):
    threaded, daemon = page
    url = threaded.observer.http.url + "/"
    rows = screenshot(url, tmp_path, "split.png")
    cards = rows[:CARDS_BOTTOM]  # the instance cards; the timeline below has coloured chips too
    split = badge_box(cards, SPLIT)
    assert split is not None and count_colour(cards, SPLIT) > 1500, "no magenta SPLIT BRAIN badge"
    x0, y0, x1, y1 = split
    assert 60 <= x1 - x0 <= 400 and 20 <= y1 - y0 <= 60  # badge-sized, not a stray pixel
    assert count_colour(cards, BACKUP) > 1500 and count_colour(cards, FAULT) > 1500
    assert count_colour(cards, MASTER) == 0  # VI_1 is shown as split brain, not as a plain master
    assert count_colour(rows[CARDS_BOTTOM:], SPLIT) > 100  # the split-brain entry in the timeline

    # The split brain resolves: the next rendering has a green MASTER badge and no magenta at all.
    daemon.snap["instances"]["VI_1"]["split_brain"] = {"active": False, "peer": None, "since": None}
    rows = screenshot(url, tmp_path, "resolved.png")
    cards = rows[:CARDS_BOTTOM]
    assert count_colour(cards, SPLIT) == 0
    green = badge_box(cards, MASTER)
    assert green is not None and green[1] <= y0 + 5  # the MASTER badge sits where the SPLIT BRAIN one was
