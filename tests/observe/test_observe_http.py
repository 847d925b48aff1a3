import asyncio
import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chimeha.observe import attach
from chimeha.observe.http import parse_listen

from observe_fakes import Event, FakeDaemon


@pytest.fixture
async def served(tmp_path):
    obs = attach(FakeDaemon(), control_path=None, metrics_addr="127.0.0.1:0", journal_path=None, signals=False)
    await obs.start()
    try:
        yield obs
    finally:
        await obs.stop()


def get(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read()


async def fetch(url, method="GET"):
    return await asyncio.to_thread(get, url, method)


async def test_status_json_and_journal_json(served):
    served.on_transition(Event("VI_1", "BACKUP", "MASTER", "higher priority 255 from 192.168.231.11", None))
    code, ctype, body = await fetch(served.http.url + "/status.json")
    assert code == 200 and ctype == "application/json"
    assert json.loads(body)["instances"]["VI_2"]["effective_priority"] == 90
    code, _, body = await fetch(served.http.url + "/journal.json?limit=5")
    assert [e["reason"] for e in json.loads(body)["entries"]] == ["higher priority 255 from 192.168.231.11"]
    code, _, body = await fetch(served.http.url + "/journal.json?limit=x")
    assert code == 400


async def test_metrics_are_prometheus_text(served):
    served.on_transition(Event("VI_1", "BACKUP", "MASTER", "r", None))
    code, ctype, body = await fetch(served.http.url + "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert fams["chimeha_vrrp_transitions"].samples[0].value == 1
    masters = [s for s in fams["chimeha_vrrp_state"].samples if s.labels["state"] == "MASTER" and s.value == 1]
    assert [s.labels["instance"] for s in masters] == ["VI_1"]


async def test_status_page_assets_and_errors(served):
    code, ctype, body = await fetch(served.http.url + "/")
    assert code == 200 and ctype.startswith("text/html") and b'<script src="app.js">' in body
    assert (await fetch(served.http.url + "/app.js"))[0] == 200
    assert b"--split: #bf00bf" in (await fetch(served.http.url + "/style.css"))[2]
    code, _, body = await fetch(served.http.url + "/nope")
    assert code == 404 and b"/status.json" in body
    assert (await fetch(served.http.url + "/status.json", method="POST"))[0] == 405
    code, _, body = await fetch(served.http.url + "/status.json", method="HEAD")
    assert code == 200 and body == b""


async def test_garbage_request_line_does_not_kill_the_listener(served):
    reader, writer = await asyncio.open_connection("127.0.0.1", served.http.port)
    writer.write(b"\x00\x01garbage\r\n\r\n")
    await writer.drain()
    assert (await reader.read())[:12] == b"HTTP/1.1 400"
    writer.close()
    assert (await fetch(served.http.url + "/status.json"))[0] == 200


async def test_snapshot_failure_serves_the_last_good_one(served):
    assert (await fetch(served.http.url + "/status.json"))[0] == 200
    served.daemon.fail_snapshot = True
    code, _, body = await fetch(served.http.url + "/status.json")
    assert code == 200 and json.loads(body)["instances"]["VI_1"]["state"] == "MASTER"


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:9650", ("127.0.0.1", 9650)), (":9650", ("", 9650)), ("[::1]:80", ("::1", 80)),
    ("0.0.0.0:0", ("0.0.0.0", 0))])
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text,words", [
    ("9650", "expected ADDR:PORT"), ("host:http", "is not a number"), ("1.2.3.4:70000", "outside 0-65535"),
    ("::1:80", "[ADDR]:PORT"), ("[::1]80", "expected [IPV6]:PORT")])
def test_parse_listen_errors_say_what(text, words):
    with pytest.raises(ValueError, match=f"bad listen address '{text}'.*{words}".replace("[", r"\[").replace("]", r"\]")):
        parse_listen(text)
