from chimeha.config import loads, render

SNIPPET = """virtual_server 10.0.0.1 53 {
    protocol UDP
    real_server 10.0.0.2 53 {
        UDP_CHECK {
            payload Ab12f 3 456
            require_reply 0a 0b
        }
    }
}
"""


def _checker(text):
    result = loads(text)
    assert result.ok, [str(d) for d in result.diagnostics]
    return result.config.virtual_servers[0].real_servers[0].checkers[0]


def test_udp_hex_strings_keep_their_blank_separated_parts():
    checker = _checker(SNIPPET)
    assert checker.payload == "Ab12f 3 456"
    assert checker.require_reply == "0a 0b"


def test_udp_hex_strings_survive_render_round_trip():
    first = loads(SNIPPET).config
    again = _checker(render(first))
    assert (again.payload, again.require_reply) == ("Ab12f 3 456", "0a 0b")


def test_bare_require_reply_means_any_reply():
    checker = _checker(SNIPPET.replace("require_reply 0a 0b", "require_reply"))
    assert checker.require_reply is True
