"""Property tests: mutated configs never raise; parse -> render -> parse round-trips."""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chimeha.config import loads, render
from chimeha.config.model import NOWHERE, Diagnostic

HERE = Path(__file__).parent
SOURCES = sorted(
    [p for p in (HERE.parents[1] / "examples" / "seed").glob("*.conf")]
    + list((HERE / "corpus").glob("*.conf"))
    + [Path(p) for p in glob.glob("/usr/share/doc/keepalived/samples/keepalived.conf.*")]
)
TEXTS = [p.read_text(errors="replace") for p in SOURCES]


def strip_where(obj):
    """The model with every position replaced by NOWHERE (re-parsing moves lines)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: strip_where(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "where"}
        if any(f.name == "where" for f in dataclasses.fields(obj)):
            changes["where"] = NOWHERE
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, tuple):
        return tuple(strip_where(x) for x in obj)
    if isinstance(obj, dict):
        return {k: strip_where(v) for k, v in obj.items()}
    return obj


def check_result(result):
    assert isinstance(result.diagnostics, list)
    for d in result.diagnostics:
        assert isinstance(d, Diagnostic) and d.severity in ("error", "warning")
        assert isinstance(d.line, int) and d.line >= 0 and d.code and d.message
    if result.config is None:
        assert not result.ok


# ----------------------------------------------------------------- mutations never raise

FRAGMENTS = ["{", "}", '"', "'", "#", "!", "\\", "$", "${X}", "$X=", "@", "@^", "~SEQ(", "~LST(", "\n", " ",
             "include ", "weight", "priority", "-1", "999999999999", "nan", "inf", "1e400", "::", "/", "0x",
             "virtual_server", "real_server", "vrrp_instance", "track_script", "TCP_CHECK", "url", "\t", "\x00",
             "é", "\u202e", "fwmark", "group", "[", "]"]


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "dup", "swap", "truncate", "replace_word"]))
        lines = text.split("\n")
        if op == "insert":
            pos = draw(st.integers(0, len(text)))
            frag = draw(st.sampled_from(FRAGMENTS) | st.text(max_size=8))
            text = text[:pos] + frag + text[pos:]
        elif op == "delete" and text:
            a = draw(st.integers(0, len(text) - 1))
            b = draw(st.integers(a, min(len(text), a + 40)))
            text = text[:a] + text[b:]
        elif op == "dup" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        elif op == "swap" and len(lines) > 1:
            i = draw(st.integers(0, len(lines) - 2))
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
            text = "\n".join(lines)
        elif op == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        elif op == "replace_word":
            words = text.split(" ")
            if words:
                i = draw(st.integers(0, len(words) - 1))
                words[i] = draw(st.sampled_from(FRAGMENTS))
                text = " ".join(words)
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_yield_model_or_diagnostics(text):
    result = loads(text, filename="m.conf", config_id="n1", opener=_no_files)
    check_result(result)
    assert result.config is not None  # text input always yields a (possibly partial) model
    render(result.config)  # whatever was built can be written back


def _no_files(path):
    raise FileNotFoundError(2, "No such file or directory")


# ----------------------------------------------------------------- round trip of existing configs


def test_round_trip_of_every_known_config():
    assert len(SOURCES) >= 40
    for path, text in zip(SOURCES, TEXTS):
        cid = "high" if path.name.endswith("conditional_conf") else "n1"
        first = loads(text, filename=str(path), config_id=cid)
        if first.config is None:
            continue
        out = render(first.config)
        second = loads(out, filename="rendered.conf", config_id=cid)
        assert strip_where(second.config) == strip_where(first.config), path
        assert render(second.config) == out, path
        assert second.ok or not first.ok, (path, [str(d) for d in second.errors])


# ----------------------------------------------------------------- round trip of generated configs

NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,10}", fullmatch=True)
V4 = st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t)))
V6 = st.tuples(st.integers(1, 0xFFFF), st.integers(0, 0xFFFF)).map(lambda t: f"fd{t[0] % 256:02x}::{t[1]:x}")
ARGS = st.lists(st.from_regex(r"[A-Za-z0-9/_.:=-]{1,10}", fullmatch=True) | st.just("a b"), min_size=1, max_size=4)
TIMER = st.integers(1, 3000).map(lambda n: n / 10)


@st.composite
def scripts(draw):
    name = draw(NAMES)
    lines = [f'    script "{" ".join(draw(ARGS)).replace("a b", chr(39) + "a b" + chr(39))}"']
    if draw(st.booleans()):
        lines.append(f"    interval {draw(TIMER)}")
    if draw(st.booleans()):
        lines.append(f"    weight {draw(st.integers(-253, 253))}{draw(st.sampled_from(['', ' reverse']))}")
    for kw in ("rise", "fall"):
        if draw(st.booleans()):
            lines.append(f"    {kw} {draw(st.integers(1, 10))}")
    if draw(st.booleans()):
        lines.append("    init_fail")
    return name, "vrrp_script %s {\n%s\n}\n" % (name, "\n".join(lines))


@st.composite
def instances(draw, script_names):
    fam6 = draw(st.booleans())
    vips = draw(st.lists(V6 if fam6 else V4, min_size=1, max_size=3, unique=True))
    version = draw(st.sampled_from([2, 3]))
    adv = draw(st.integers(1, 4000)) / 100 if version == 3 else draw(st.integers(1, 255))
    lines = [f"    state {draw(st.sampled_from(['MASTER', 'BACKUP']))}",
             f"    interface {draw(NAMES)}",
             f"    virtual_router_id {draw(st.integers(1, 255))}",
             f"    priority {draw(st.integers(1, 255))}",
             f"    advert_int {adv}",
             f"    version {version}"]
    if draw(st.booleans()):
        lines.append("    nopreempt")
    if draw(st.booleans()):
        lines.append(f"    preempt_delay {draw(TIMER)}")
    if version == 2 and draw(st.booleans()):
        lines.append("    authentication {\n        auth_type PASS\n        auth_pass %s\n    }" % draw(
            st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True)))
    vip_lines = []
    for v in vips:
        extra = draw(st.sampled_from(["", " dev eth1", " label eth0:1", " scope link", " -nodad", " no_track"]))
        vip_lines.append(f"        {v}{draw(st.sampled_from(['', '/24' if not fam6 else '/64']))}{extra}")
    lines.append("    virtual_ipaddress {\n%s\n    }" % "\n".join(vip_lines))
    if script_names and draw(st.booleans()):
        refs = draw(st.lists(st.sampled_from(script_names), min_size=1, unique=True))
        body = "\n".join(f"        {r}{draw(st.sampled_from(['', ' weight 5', ' weight -7 reverse']))}" for r in refs)
        lines.append("    track_script {\n%s\n    }" % body)
    if draw(st.booleans()):
        lines.append("    unicast_src_ip %s\n    unicast_peer {\n        %s\n    }" % (draw(V4), draw(V4)))
    for kw in ("notify_master", "notify_backup"):
        if draw(st.booleans()):
            lines.append(f'    {kw} "/usr/local/bin/n.sh {draw(NAMES)}"')
    for kw, strat in (("garp_master_delay", TIMER), ("garp_master_repeat", st.integers(0, 10))):
        if draw(st.booleans()):
            lines.append(f"    {kw} {draw(strat)}")
    return "vrrp_instance %s {\n%s\n}\n" % (draw(NAMES), "\n".join(lines))


CHECKERS = st.sampled_from([
    "TCP_CHECK {\n connect_timeout 3\n connect_port 81\n}",
    "HTTP_GET {\n url {\n path /health\n status_code 200\n }\n retry 2\n delay_before_retry 1.5\n}",
    "SSL_GET {\n url {\n path /\n digest 0123abcd\n }\n enable_sni\n}",
    "MISC_CHECK {\n misc_path \"/bin/check a\"\n misc_timeout 5\n}",
    "DNS_CHECK {\n type A\n name example.org\n}",
    "PING_CHECK {\n}",
    "UDP_CHECK {\n connect_port 53\n require_reply\n}",
    "SMTP_CHECK {\n helo_name mx\n}",
])


@st.composite
def virtual_servers(draw):
    head = draw(st.sampled_from(["addr", "fwmark"]))
    first = f"{draw(V4)} {draw(st.integers(1, 65535))}" if head == "addr" else f"fwmark {draw(st.integers(1, 1000))}"
    lines = [f"    lb_algo {draw(st.sampled_from(['rr', 'wrr', 'lc', 'wlc', 'sh', 'dh', 'lblc']))}",
             f"    lb_kind {draw(st.sampled_from(['NAT', 'DR', 'TUN']))}",
             f"    delay_loop {draw(TIMER)}"]
    if head == "addr":
        lines.append(f"    protocol {draw(st.sampled_from(['TCP', 'UDP', 'SCTP']))}")
    if draw(st.booleans()):
        lines.append(f"    persistence_timeout {draw(st.integers(1, 3600))}")
    if draw(st.booleans()):
        lines.append(f"    quorum {draw(st.integers(1, 3))}\n    hysteresis {draw(st.integers(0, 2))}")
    for addr in draw(st.lists(V4, min_size=1, max_size=3, unique=True)):
        checks = "\n".join(draw(st.lists(CHECKERS, max_size=2)))
        weight = draw(st.sampled_from(["", "weight\n", f"weight {draw(st.integers(0, 100))}\n"]))
        lines.append(f"    real_server {addr} {draw(st.integers(1, 65535))} {{\n{weight}{checks}\n}}")
    return "virtual_server %s {\n%s\n}\n" % (first, "\n".join(lines))


@st.composite
def configs(draw):
    parts = []
    if draw(st.booleans()):
        parts.append("global_defs {\n router_id %s\n enable_script_security\n vrrp_version %d\n}\n"
                     % (draw(NAMES), draw(st.sampled_from([2, 3]))))
    scr = draw(st.lists(scripts(), max_size=3, unique_by=lambda s: s[0]))
    parts += [s[1] for s in scr]
    names = [s[0] for s in scr]
    parts += draw(st.lists(instances(names), max_size=3))
    parts += draw(st.lists(virtual_servers(), max_size=3))
    return "\n".join(parts)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_generated_configs_round_trip(text):
    first = loads(text, filename="gen.conf", config_id="n1")
    assert first.config is not None
    assert not [d for d in first.diagnostics if d.code in ("unknown-keyword", "unknown-block", "missing-parameter")]
    out = render(first.config)
    second = loads(out, filename="rendered.conf", config_id="n1")
    assert strip_where(second.config) == strip_where(first.config)
    assert render(second.config) == out


ARG_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="$"), max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(ARG_TEXT, min_size=1, max_size=5).filter(
    lambda argv: argv[0].strip() != "" and not any("'" in a and '"' in a for a in argv)))
def test_script_argv_round_trips_through_render(argv):
    from chimeha.config.render import _cmd

    argv = tuple(argv)
    text = (f"vrrp_script s {{\n    script {_cmd(argv)}\n}}\n"
            f"vrrp_instance V {{\n    interface e\n    virtual_router_id 1\n    virtual_ipaddress {{\n        1.1.1.1\n    }}\n"
            f"    notify_master {_cmd(argv)} root\n}}\n")
    c = loads(text, config_id="n1").config
    assert c.vrrp_scripts["s"].script == argv
    assert c.instances["V"].notify_master == argv and c.instances["V"].script_users["notify_master"] == ("root",)
