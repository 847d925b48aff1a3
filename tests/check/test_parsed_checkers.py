"""Every checker kind built by the real config parser, probed against a real server.

Each case writes a keepalived.conf snippet, takes
``config.virtual_servers[0].real_servers[0].checkers[0]`` from
``chimeha.config.loads`` and probes with it: once while the server answers as
configured (up) and once after the server changes (down). The settings that
the parser represents its own way (status_code words, misc_path argv, hex
payloads, legacy SMTP host blocks, FILE_CHECK's weight and ``dynamic``) are
each made to matter, so a probe that misread them fails here.
"""

from __future__ import annotations

import hashlib
import types

import pytest

from chimeha import config
from chimeha.check import probe, resolve_timing, target_for


def parsed(body: str, port: int, top: str = ""):
    """``(checker, target, timing)`` of the one checker in ``body``, parsed from a full config."""
    res = config.loads(f"""{top}
virtual_server 127.0.0.1 80 {{
    protocol TCP
    real_server 127.0.0.1 {port} {{
        weight 3
        {body}
    }}
}}
""", "test.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    cfg = res.config
    vs = cfg.virtual_servers[0]
    rs = vs.real_servers[0]
    checker = rs.checkers[0]
    return checker, target_for(rs, vs, cfg.track_files), resolve_timing(checker, rs, vs)


PROBED: list = []  # the checkers each case probed (reset per test)


async def check(body: str, port: int, top: str = ""):
    checker, target, timing = parsed(body, port, top)
    PROBED.append(checker)
    return await probe(checker, target, timing)


# --- one scenario per kind: (up result, down result) ---------------------------


async def tcp_case(s):
    # connect_port must win over the real server's (closed) port.
    up = await check(f"TCP_CHECK {{ connect_port {s.http.port}\n connect_timeout 2 }}", s.closed)
    down = await check("TCP_CHECK { connect_timeout 2 }", s.closed)
    assert "refused" in down.detail
    return up, down


async def http_case(s):
    body = b"portal ok"
    s.http.response = b"HTTP/1.0 302 Found\r\n\r\n" + body     # not 2xx: only the status_code words allow it
    conf = f"""HTTP_GET {{
        url {{
            path /health
            digest {hashlib.md5(body).hexdigest()}
            status_code 200 300-302
        }}
        virtualhost portal.test
        http_protocol 1.1
        connect_timeout 2
    }}"""
    up = await check(conf, s.http.port)
    req = s.http.requests[-1]
    assert req.startswith(b"GET /health HTTP/1.1\r\n") and b"\r\nHost: portal.test\r\n" in req
    s.http.response = b"HTTP/1.0 302 Found\r\n\r\nportal changed"
    down = await check(conf, s.http.port)
    assert "digest" in down.detail
    return up, down


async def ssl_case(s):
    s.https.response = b"HTTP/1.0 200 OK\r\n\r\nstatus GREEN 42"
    conf = """SSL_GET {
        url {
            path /
            regex "GREEN [0-9]+"
        }
        virtualhost portal.test
        enable_sni
        connect_timeout 2
    }"""
    up = await check(conf, s.https.port)
    assert s.https.sni[-1] == "portal.test"
    s.https.response = b"HTTP/1.0 200 OK\r\n\r\nstatus RED"
    down = await check(conf, s.https.port)
    assert "regex" in down.detail
    return up, down


async def misc_case(s):
    # misc_path is one quoted command the parser splits into argv; the status
    # file's name has a blank, so the quoting must survive as one argument.
    script = s.tmp / "status.sh"
    script.write_text('exit "$(cat "$1")"\n')
    status = s.tmp / "exit status"
    conf = f"""MISC_CHECK {{
        misc_path "/bin/sh {script} '{status}'"
        misc_dynamic
        misc_timeout 10
    }}"""
    status.write_text("12")
    up = await check(conf, 80)
    assert up.weight == 10                                   # misc_dynamic: 12 - 2
    status.write_text("1")
    down = await check(conf, 80)
    assert "exited 1" in down.detail
    return up, down


async def smtp_case(s):
    # A legacy host block names the server; the real server's port is closed.
    conf = f"""SMTP_CHECK {{
        helo_name director.test
        connect_timeout 2
        host {{
            connect_ip 127.0.0.1
            connect_port {s.smtp.port}
        }}
    }}"""
    up = await check(conf, s.closed)
    assert b"HELO director.test\r\n" in s.smtp.received
    s.smtp.helo_reply = b"501 who are you"
    down = await check(conf, s.closed)
    assert "HELO" in down.detail and "501" in down.detail
    return up, down


async def dns_case(s):
    conf = f"""DNS_CHECK {{
        type A
        name www.example.test
        connect_port {s.dns.port}
        connect_timeout 2
    }}"""
    up = await check(conf, 80)
    q = s.dns.queries[-1].question[0]
    assert (q.name.to_text(), q.rdtype) == ("www.example.test.", 1)
    s.dns.mode = "nxdomain"
    down = await check(conf, 80)
    assert "NXDOMAIN" in down.detail
    return up, down


async def udp_case(s):
    srv = await s.udp(lambda data: b"PONG" + data)
    conf = f"""UDP_CHECK {{
        payload 50494e47
        require_reply 504f4e47
        min_reply_length 8
        max_reply_length 8
        connect_timeout 2
    }}"""
    up = await check(conf, srv.port)
    assert srv.received[-1] == b"PING"                       # the hex payload, decoded
    srv.reply = lambda data: b"PANG" + data
    down = await check(conf, srv.port)
    assert "does not match" in down.detail
    return up, down


async def ping_case(s):
    up = await check("PING_CHECK { connect_timeout 2 }", 80)
    down = await check("PING_CHECK {\n bind_if chimeha-nope0\n connect_timeout 2 }", 80)
    assert "no such interface" in down.detail
    return up, down


async def file_case(s):
    flag = s.tmp / "weight"
    top = f"track_file load {{\n file {flag}\n weight 5\n}}"
    # The checker's own "weight 2 reverse" overrides the track_file's 5; dynamic
    # reports the sum: 3 - 1 * 2 = 1, then 3 - 2 * 2 = -1 (down).
    conf = "FILE_CHECK {\n track_file load\n weight 2 reverse\n dynamic\n }"
    flag.write_text("1\n")
    up = await check(conf, 80, top)
    assert up.weight == 1
    flag.write_text("2\n")
    down = await check(conf, 80, top)
    assert "-1" in down.detail
    return up, down


async def bfd_case(s):
    # The session state comes from chimeha.runtime.bfd (tests/bfd/test_bfd_sockets.py runs real sessions);
    # here: the parsed name selects the published session, and a name with no session is down.
    from chimeha.check.bfd import STATES

    top = "bfd_instance peer {\n neighbor_ip 127.0.0.2\n}"
    STATES.publish("peer", True, "BFD to 127.0.0.2 up: neighbor is Init")
    try:
        up = await check("BFD_CHECK {\n name peer\n }", 80, top)
        STATES.publish("peer", False, "BFD to 127.0.0.2 down: control detection time expired, 150 ms")
        down = await check("BFD_CHECK {\n name peer\n }", 80, top)
        assert "detection time expired" in down.detail
    finally:
        STATES.forget("peer")
    gone = await check("BFD_CHECK {\n name peer\n }", 80, top)
    assert not gone.ok and "no BFD session" in gone.detail
    return up, down


CASES = {
    "TCP_CHECK": tcp_case, "HTTP_GET": http_case, "SSL_GET": ssl_case, "MISC_CHECK": misc_case,
    "SMTP_CHECK": smtp_case, "DNS_CHECK": dns_case, "UDP_CHECK": udp_case, "PING_CHECK": ping_case,
    "FILE_CHECK": file_case, "BFD_CHECK": bfd_case,
}


@pytest.fixture
def servers(http_server, https_server, smtp_server, dns_server, udp_server, unused_port, tmp_path):
    return types.SimpleNamespace(http=http_server, https=https_server, smtp=smtp_server, dns=dns_server,
                                 udp=udp_server, closed=unused_port(), tmp=tmp_path)


@pytest.mark.parametrize("kind", [
    # PING_CHECK needs a raw ICMP socket here (ping_group_range is not opened up).
    pytest.param(k, marks=pytest.mark.system) if k == "PING_CHECK" else k for k in CASES])
async def test_parsed_checker_probes_a_real_server(kind, servers):
    PROBED.clear()
    up, down = await CASES[kind](servers)
    assert up.ok, up.detail
    assert not down.ok, down.detail
    assert PROBED and {c.kind for c in PROBED} == {kind}
    assert {type(c).__module__ for c in PROBED} == {"chimeha.config.model"}


def test_cases_cover_every_supported_kind():
    from chimeha.check import SUPPORTED_KINDS
    assert set(CASES) == set(SUPPORTED_KINDS)
