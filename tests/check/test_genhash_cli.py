"""``chime-ha genhash`` against a real server, and against keepalived's genhash."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys

import pytest

CLI = [sys.executable, "-c", "import sys; from chimeha.cli import main; sys.exit(main())"]


async def run(*argv):
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


async def test_genhash_prints_body_md5_and_reports_errors(http_server, unused_port):
    http_server.response = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nchime portal"
    rc, out, err = await run(*CLI, "genhash", "-s", "127.0.0.1", "-p", str(http_server.port), "-u", "/x",
                             "-V", "portal.test", "-P", "1.1")
    assert rc == 0, err
    assert out.strip() == hashlib.md5(b"chime portal").hexdigest()
    assert http_server.requests[-1].startswith(b"GET /x HTTP/1.1\r\n")
    assert b"Host: portal.test\r\n" in http_server.requests[-1]
    rc, out, err = await run(*CLI, "genhash", "-s", "127.0.0.1", "-p", str(unused_port()), "-u", "/")
    assert rc == 1 and "refused" in err and "Traceback" not in err
    rc, out, err = await run(*CLI, "genhash", "-s", "portal", "-p", "80", "-u", "/")
    assert rc == 2 and "not an IP address" in err and "Traceback" not in err


@pytest.mark.keepalived
async def test_genhash_agrees_with_keepalived_genhash(http_server):
    if not shutil.which("genhash"):
        pytest.skip("genhash not installed")
    http_server.response = b"HTTP/1.0 200 OK\r\nContent-Length: 11\r\n\r\n<b>ok</b>\r\n"
    rc, ours, err = await run(*CLI, "genhash", "-s", "127.0.0.1", "-p", str(http_server.port), "-u", "/")
    assert rc == 0, err
    _, theirs, _ = await run("genhash", "-s", "127.0.0.1", "-p", str(http_server.port), "-u", "/")
    assert ours.strip() == theirs.strip().split()[-1]
