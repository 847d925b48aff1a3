"""vrrp_track_process read as keepalived 2.2.7 reads it (vrrp_parser.c): order matters, bad values are ignored."""

from __future__ import annotations

from chimeha.config import loads
from chimeha.config.render import render


def tp(body: str):
    r = loads(f"vrrp_track_process p {{\n{body}\n}}\n", filename="t.conf", config_id="n1")
    assert r.config is not None
    return r.config.track_processes["p"], [(d.line, d.severity, d.code) for d in r.diagnostics]


def test_bare_param_match_is_exact_and_the_word_exact_is_ignored_with_a_warning():
    p, diags = tp(" process nginx\n param_match")
    assert p.param_match == "exact" and diags == []
    p, diags = tp(" process nginx\n param_match exact")
    assert p.param_match is None and diags == [(3, "warning", "unexpected-argument")]
    p, _ = tp(" process nginx -g\n param_match initial")
    assert p.param_match == "initial"


def test_quorum_max_zero_sets_quorum_zero_and_bounds_are_checked_in_order():
    p, diags = tp(" process x\n quorum_max 0")
    assert (p.quorum, p.quorum_max, diags) == (0, 0, [])
    p, diags = tp(" process x\n quorum 3\n quorum_max 2")
    assert (p.quorum, p.quorum_max) == (3, None) and diags == [(4, "warning", "out-of-range")]
    p, diags = tp(" process x\n quorum_max 2\n quorum 3")
    assert (p.quorum, p.quorum_max) == (1, 2) and diags == [(4, "warning", "out-of-range")]
    p, diags = tp(" process x\n quorum 0")
    assert p.quorum == 1 and diags == [(3, "warning", "out-of-range")]


def test_delay_sets_both_delays_until_one_is_given_again():
    p, _ = tp(" process x\n delay 2\n fork_delay 0.5")
    assert (p.fork_delay, p.terminate_delay) == (0.5, 2.0)
    p, _ = tp(" process x\n terminate_delay 0.5\n delay 2")
    assert (p.fork_delay, p.terminate_delay) == (2.0, 2.0)
    p, diags = tp(" process x\n delay 0")
    assert p.fork_delay is None and diags == [(3, "warning", "out-of-range")]


def test_render_round_trips_the_keepalived_readings():
    text = ("vrrp_track_process p {\n process nginx -g\n param_match\n quorum_max 0\n"
            " delay 2\n fork_delay 0.5\n}\n")
    r = loads(text, filename="t.conf", config_id="n1")
    again = loads(render(r.config), filename="r.conf", config_id="n1")
    assert again.diagnostics == []
    assert again.config.track_processes["p"] == r.config.track_processes["p"].__class__(
        **{**r.config.track_processes["p"].__dict__, "where": again.config.track_processes["p"].where})
