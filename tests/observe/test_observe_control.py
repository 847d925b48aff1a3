import asyncio
import json
import os
import shutil
import socket
import stat
import sys
import tempfile

import pytest

from chimeha.observe import attach
from chimeha.observe.control import ControlClient, ControlError, ControlServer
from chimeha.observe.dumps import DumpPaths

from observe_fakes import Event, FakeDaemon


@pytest.fixture
async def observer(tmp_path):
    obs = attach(FakeDaemon(), control_path=str(tmp_path / "run" / "ctl.sock"), metrics_addr=None,
                 journal_path=None, signals=False,
                 dump_paths=DumpPaths(str(tmp_path / "k.data"), str(tmp_path / "k.stats"), str(tmp_path / "k.json")))
    await obs.start()
    try:
        yield obs
    finally:
        await obs.stop()


def raw_exchange(path, *lines, read=None):
    """Send raw request lines, return the parsed answer lines (one per request unless ``read``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(b"".join(lines))
        want = read if read is not None else len(lines)
        buf = b""
        while buf.count(b"\n") < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [json.loads(x) for x in buf.splitlines() if x.strip()]


async def test_status_round_trip_and_socket_is_root_only(observer):
    path = observer.control.path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    status = await asyncio.to_thread(ControlClient(path).status)
    assert status["instances"]["VI_1"]["state"] == "MASTER"
    assert status["instances"]["VI_1"]["drops_by_reason"]["checksum"] == 2
    assert status["virtual_servers"][0]["real_servers"][1]["healthy"] is False


async def test_bad_requests_get_errors_and_the_connection_stays_usable(observer):
    answers = await asyncio.to_thread(
        raw_exchange, observer.control.path,
        b"this is not json\n", b"[1, 2]\n", b'{"cmd": "bogus"}\n', b'{"cmd": "journal", "limit": -3}\n',
        b'{"cmd": "dump", "kind": "nope"}\n', b'{"cmd": "status"}\n')
    assert [a["ok"] for a in answers] == [False, False, False, False, False, True]
    assert answers[0]["error"].startswith("request is not JSON")
    assert answers[1]["error"] == 'request must be a JSON object with a "cmd" string'
    assert answers[2]["error"] == "unknown command 'bogus' (expected: status, journal, reload, dump)"
    assert "'limit' must be a non-negative integer" in answers[3]["error"]
    assert "unknown dump kind 'nope'" in answers[4]["error"]


async def test_oversized_request_is_refused_without_killing_the_server(observer):
    answers = await asyncio.to_thread(raw_exchange, observer.control.path, b"x" * 200000 + b"\n", read=1)
    assert answers[0]["ok"] is False and "longer than" in answers[0]["error"]
    assert (await asyncio.to_thread(ControlClient(observer.control.path).status))["node"]["router_id"] == "server1"


async def wait_followers(observer, n=1):
    base = 1 if observer.metrics is not None else 0  # the metrics' own subscription
    for _ in range(1000):
        if observer.journal.subscribers >= base + n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the follower never subscribed")


async def test_journal_and_follow_stream_new_entries(observer):
    observer.on_transition(Event("VI_1", "INIT", "BACKUP", "startup", None))
    client = ControlClient(observer.control.path)
    assert [e["to"] for e in await asyncio.to_thread(client.journal)] == ["BACKUP"]

    follow = client.follow(limit=10, idle_timeout=20)
    first = await asyncio.to_thread(next, follow)
    assert first["reason"] == "startup"
    # The follower is subscribed once the backlog arrived: new entries stream to it.
    observer.on_transition(Event("VI_1", "BACKUP", "MASTER", "no advertisement from 192.168.231.12 for 3.008 s", None))
    second = await asyncio.to_thread(next, follow)
    assert (second["from"], second["to"]) == ("BACKUP", "MASTER")
    assert second["reason"] == "no advertisement from 192.168.231.12 for 3.008 s"
    follow.close()


async def test_follow_filters_by_instance(observer):
    client = ControlClient(observer.control.path)
    follow = client.follow(limit=0, instance="VI_2", idle_timeout=20)
    pending = asyncio.ensure_future(asyncio.to_thread(next, follow))
    await wait_followers(observer)
    observer.on_transition(Event("VI_1", "BACKUP", "MASTER", "not for you", None))
    observer.on_transition(Event("VI_2", "BACKUP", "MASTER", "for you", None))
    entry = await asyncio.wait_for(pending, 20)
    assert entry["instance"] == "VI_2" and entry["reason"] == "for you"
    follow.close()


async def test_reload_and_dump_through_the_socket(observer, tmp_path):
    client = ControlClient(observer.control.path)
    observer.daemon.reload_result = {"ok": False, "message": "invalid configuration; still running the old one",
                                     "diagnostics": ["/etc/k.conf:3: error: unknown keyword 'vrrp_instanc' [E1]"]}
    outcome = await asyncio.to_thread(client.reload)
    assert outcome["ok"] is False and outcome["diagnostics"][0].startswith("/etc/k.conf:3: error")
    assert observer.journal.entries()[-1]["kind"] == "reload"
    assert observer.journal.entries()[-1]["ok"] is False


async def test_stale_socket_is_replaced_and_a_live_one_is_not_stolen(tmp_path):
    path = str(tmp_path / "ctl.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: a crashed daemon's leftover
    first = ControlServer(path, None)
    await first.start()
    try:
        with pytest.raises(ControlError, match="already listening"):
            await ControlServer(path, None).start()
    finally:
        await first.stop()
    assert not os.path.exists(path)
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(ControlError, match="not a socket"):
        await ControlServer(str(regular), None).start()


def test_client_errors_are_operator_sentences(tmp_path):
    with pytest.raises(ControlError, match=r"chime-ha is not running: no control socket at .*nope\.sock"):
        ControlClient(str(tmp_path / "nope.sock")).status()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()
    with pytest.raises(ControlError, match="stale socket"):
        ControlClient(str(tmp_path / "stale.sock")).status()


async def test_non_root_peer_is_refused():
    """A peer whose uid is not root (nor the daemon's) gets a refusal, not data."""
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    directory = tempfile.mkdtemp(prefix="chimeha-ctl-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "ctl.sock")
    server = ControlServer(path, None)
    await server.start()
    os.chmod(path, 0o666)  # open the file mode so only the credential check stands in the way
    try:
        answer = await _status_as_nobody(path)
    finally:
        await server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    assert answer == {"ok": False, "error": "permission denied: the control socket is for root only"}


async def _status_as_nobody(path):
    # The interpreter lives under /root: import everything before dropping to nobody.
    code = ("import socket, os; os.setuid(65534); s = socket.socket(socket.AF_UNIX); s.connect(%r); "
            "print(s.recv(4096).decode())" % path)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return json.loads(out)


async def test_fuzzed_requests_each_get_one_answer_and_the_server_survives(observer):
    import random

    rng = random.Random(6)
    values = [None, True, 0, -1, 2**70, 1.5, "", "VI_1", "x" * 300, [], {}, [1], {"a": 1}, "data", "all"]
    lines = []
    for _ in range(300):
        kind = rng.random()
        if kind < 0.3:
            line = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))).replace(b"\n", b" ")
        else:
            req = {"cmd": rng.choice(["status", "journal", "dump", "reload", "bogus", 5, None])}
            for key in rng.sample(["limit", "instance", "kind", "extra"], rng.randrange(0, 4)):
                req[key] = rng.choice(values)
            line = json.dumps(req).encode()
        if not line.strip():
            line = b"{"
        lines.append(line + b"\n")
    answers = await asyncio.to_thread(raw_exchange, observer.control.path, *lines)
    assert len(answers) == len(lines)
    assert all(isinstance(a.get("ok"), bool) and (a["ok"] or isinstance(a.get("error"), str)) for a in answers)
    assert (await asyncio.to_thread(ControlClient(observer.control.path).status))["instances"]
    assert any(a.get("result", {}).get("paths") for a in answers if a["ok"] and isinstance(a.get("result"), dict))
