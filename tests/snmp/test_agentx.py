"""The AgentX wire format and lookups (chimeha.snmp.agentx), RFC 2741."""

import struct

import pytest

from chimeha.snmp import agentx as ax


def test_oid_uses_the_internet_prefix_and_decodes_back():
    raw = ax.encode_oid((1, 3, 6, 1, 2, 1, 207, 1), include=True)
    assert raw[:4] == bytes([3, 2, 1, 0])  # 3 sub-ids after prefix 2 (mib-2), include set
    assert raw[4:] == struct.pack("!III", 1, 207, 1)
    oid, include, pos = ax._oid(raw, 0, "!")
    assert oid == (1, 3, 6, 1, 2, 1, 207, 1) and include and pos == len(raw)
    assert ax.encode_oid((1, 2, 3))[:4] == bytes([3, 0, 0, 0])  # no prefix outside 1.3.6.1
    assert ax.encode_oid(())[:4] == bytes(4)  # the null OID


def _request(pdu_type, ranges, *, order="!", extra=b"", sid=7, tid=8, pid=9):
    flags = ax.NETWORK_BYTE_ORDER if order == "!" else 0
    body = extra
    for start, end, include in ranges:
        for oid, inc in ((start, include), (end, False)):
            prefix = 0
            subs = oid
            if len(oid) > 4 and oid[:4] == (1, 3, 6, 1):
                prefix, subs = oid[4], oid[5:]
            body += struct.pack("BBBB", len(subs), prefix, int(inc), 0) + struct.pack(f"{order}{len(subs)}I", *subs)
    return struct.pack(f"{order[0] if order == '!' else '<'}BBBBIIII".replace("<BBBB", "<BBBB"), 1, pdu_type,
                       flags, 0, sid, tid, pid, len(body)) + body


VIEW = ax.MibView({(1, 3, 6, 1, 9, 1, 0): (ax.INTEGER, 5), (1, 3, 6, 1, 9, 2, 1): (ax.OCTET_STRING, b"x"),
                   (1, 3, 6, 1, 9, 2, 2): (ax.COUNTER64, 2 ** 40)})


def _varbinds(resp: bytes):
    req = ax.decode(resp)
    assert req.header.type == ax.RESPONSE
    body, pos, out = resp[ax.HEADER_LEN:], 8, []
    while pos < len(body):
        vtype = struct.unpack_from("!H", body, pos)[0]
        oid, _inc, pos = ax._oid(body, pos + 4, "!")
        if vtype in (ax.INTEGER, ax.COUNTER32, ax.GAUGE32, ax.TIME_TICKS):
            val = struct.unpack_from("!I", body, pos)[0]
            pos += 4
        elif vtype == ax.COUNTER64:
            val = struct.unpack_from("!Q", body, pos)[0]
            pos += 8
        elif vtype in (ax.OCTET_STRING, ax.IP_ADDRESS):
            val, pos = ax._octets(body, pos, "!")
        else:
            val = None
        out.append((oid, vtype, val))
    return req, out


@pytest.mark.parametrize("order", ["!", "<"])
def test_get_answers_values_and_no_such_in_either_byte_order(order):
    raw = _request(ax.GET, [((1, 3, 6, 1, 9, 1, 0), (), False), ((1, 3, 6, 1, 9, 2, 9), (), False),
                            ((1, 3, 6, 1, 8), (), False)], order=order)
    req = ax.decode(raw)
    assert (req.header.session_id, req.header.transaction_id, req.header.packet_id) == (7, 8, 9)
    resp, vbs = _varbinds(ax.answer(req, VIEW))
    assert (resp.header.session_id, resp.header.transaction_id, resp.header.packet_id) == (7, 8, 9)
    assert vbs == [((1, 3, 6, 1, 9, 1, 0), ax.INTEGER, 5), ((1, 3, 6, 1, 9, 2, 9), ax.NO_SUCH_INSTANCE, None),
                   ((1, 3, 6, 1, 8), ax.NO_SUCH_OBJECT, None)]


def test_getnext_honours_include_and_the_end_bound():
    raw = _request(ax.GETNEXT, [((1, 3, 6, 1, 9, 1, 0), (), False),  # strictly after
                                ((1, 3, 6, 1, 9, 1, 0), (), True),  # the start itself qualifies
                                ((1, 3, 6, 1, 9, 2, 2), (), False),  # past the last: end of view
                                ((1, 3, 6, 1, 9), (1, 3, 6, 1, 9, 2), False)])  # bounded: only .1.0
    _resp, vbs = _varbinds(ax.answer(ax.decode(raw), VIEW))
    assert [v[:2] for v in vbs] == [((1, 3, 6, 1, 9, 2, 1), ax.OCTET_STRING), ((1, 3, 6, 1, 9, 1, 0), ax.INTEGER),
                                    ((1, 3, 6, 1, 9, 2, 2), ax.END_OF_MIB_VIEW), ((1, 3, 6, 1, 9, 1, 0), ax.INTEGER)]
    assert vbs[0][2] == b"x"
    raw = _request(ax.GETNEXT, [((1, 3, 6, 1, 9, 1, 0), (1, 3, 6, 1, 9, 2), False)])
    _resp, vbs = _varbinds(ax.answer(ax.decode(raw), VIEW))
    assert vbs[0][1] == ax.END_OF_MIB_VIEW  # the next object is at the (exclusive) end


def test_getbulk_non_repeaters_then_repetitions_until_the_end():
    raw = _request(ax.GETBULK, [((1, 3, 6, 1, 9), (), False), ((1, 3, 6, 1, 9, 1), (), False)],
                   extra=struct.pack("!HH", 1, 5))
    req = ax.decode(raw)
    assert (req.non_repeaters, req.max_repetitions) == (1, 5)
    _resp, vbs = _varbinds(ax.answer(req, VIEW))
    assert [(v[0][-2:], v[1]) for v in vbs] == [((1, 0), ax.INTEGER),  # non-repeater
                                                 ((1, 0), ax.INTEGER), ((2, 1), ax.OCTET_STRING),
                                                 ((2, 2), ax.COUNTER64), ((2, 2), ax.END_OF_MIB_VIEW)]
    assert vbs[3][2] == 2 ** 40


def test_sets_are_refused_and_cleanup_takes_no_answer():
    resp = ax.decode(ax.answer(ax.decode(_request(ax.TESTSET, [])), VIEW))
    assert resp.error == ax.NOT_WRITABLE
    assert ax.decode(ax.answer(ax.decode(_request(ax.COMMITSET, [])), VIEW)).error == ax.NO_ERROR
    assert ax.answer(ax.decode(_request(ax.CLEANUPSET, [])), VIEW) is None
    assert ax.answer(ax.decode(_request(ax.CLOSE, [])), VIEW) is None


def test_open_and_register_pdus_carry_what_the_master_reads():
    raw = ax.open_pdu((1, 3, 6, 1, 4, 1, 9586), "chime-ha", packet_id=1)
    h = ax.decode_header(raw)
    assert (h.type, h.session_id, h.packet_id, h.flags & ax.NETWORK_BYTE_ORDER) == (ax.OPEN, 0, 1, ax.NETWORK_BYTE_ORDER)
    assert raw.endswith(struct.pack("!I", 8) + b"chime-ha")
    reg = ax.register_pdu(42, (1, 3, 6, 1, 2, 1, 207), packet_id=3)
    h = ax.decode_header(reg)
    assert (h.type, h.session_id, h.payload_length) == (ax.REGISTER, 42, len(reg) - ax.HEADER_LEN)
    assert reg[ax.HEADER_LEN:ax.HEADER_LEN + 4] == bytes([0, 127, 0, 0])  # timeout, priority, no range


@pytest.mark.parametrize("data,match", [(b"\x01\x05", "shorter"), (b"\x02" + bytes(19), "version 2"),
                                        (struct.pack("!BBBBIIII", 1, 6, 0x10, 0, 0, 0, 0, 40), "truncated"),
                                        (struct.pack("!BBBBIIII", 1, 6, 0x10, 0, 0, 0, 0, 4) + bytes([9, 0, 0, 0]),
                                         "truncated OID")])
def test_malformed_pdus_raise_agentx_error(data, match):
    with pytest.raises(ax.AgentXError, match=match):
        ax.decode(data)


@pytest.mark.parametrize("spec,want", [(None, ("unix", "/var/agentx/master", 0)),
                                       ("unix:/run/agentx", ("unix", "/run/agentx", 0)),
                                       ("/tmp/x.sock", ("unix", "/tmp/x.sock", 0)),
                                       ("tcp:127.0.0.1:705", ("tcp", "127.0.0.1", 705)),
                                       ("localhost:705", ("tcp", "localhost", 705)),
                                       ("705", ("tcp", "localhost", 705)),
                                       ("tcp:[::1]:705", ("tcp", "::1", 705))])
def test_parse_address(spec, want):
    assert ax.parse_address(spec) == want


@pytest.mark.parametrize("spec", ["udp:1.2.3.4:705", "unix:relative", "tcp:host:99999", "nonsense"])
def test_parse_address_refuses(spec):
    with pytest.raises(ValueError):
        ax.parse_address(spec)
