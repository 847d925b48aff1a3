"""The lexer and block parser: comments, quotes, braces, includes, parameters, conditionals."""

from __future__ import annotations

from chimeha.config import load, loads
from chimeha.config.lexer import Lexer, split_words, strip_comment
from chimeha.config.parser import parse_lines
from chimeha.config.values import split_command

INST = """vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        10.0.0.1
    }
}
"""


def lex(text: str, config_id: str = "node1", **kw):
    diags = []
    lx = Lexer(diags, config_id=config_id, **kw)
    lx.lex_text(text, "t.conf")
    return lx, diags


def words(text: str, **kw) -> list[list[str]]:
    lx, _ = lex(text, **kw)
    return [[t.text for t in ln.tokens] for ln in lx.lines]


def test_comments_hash_and_bang_anywhere_but_not_in_quotes():
    assert strip_comment("priority 100 # main ! x") == "priority 100 "
    assert strip_comment("priority 100 ! main") == "priority 100 "
    assert strip_comment('script "/bin/echo #1 !2" # c') == 'script "/bin/echo #1 !2" '
    assert words("! all comment\n   # indented comment\n\npriority 5!x") == [["priority", "5"]]


def test_quoted_strings_join_and_escape():
    toks = split_words('a "b c" d"e f"g \'h i\' "\\t\\x41\\101\\"q"', "f", 1)
    assert [t.text for t in toks] == ["a", "b c", "de fg", "h i", '\tAA"q']
    assert [t.quoted for t in toks] == [False, True, True, True, True]


def test_braces_are_tokens_and_lines_are_kept():
    lx, _ = lex("vrrp_instance X{\n  a 1 }\n\n b {c}\n")
    assert [(ln.line, [t.text for t in ln.tokens]) for ln in lx.lines] == [
        (1, ["vrrp_instance", "X", "{"]), (2, ["a", "1", "}"]), (4, ["b", "{", "c", "}"])]


def test_brace_on_next_line_opens_block_of_previous_statement():
    lx, diags = lex("virtual_ipaddress\n{\n  10.0.0.1\n}\n")
    tree = parse_lines(lx.lines, diags)
    assert diags == []
    assert [(s.name, [c.name for c in s.block]) for s in tree] == [("virtual_ipaddress", ["10.0.0.1"])]
    assert tree[0].block[0].where.line == 3


def test_brace_errors_have_lines():
    lx, diags = lex("a {\n b 1\n")
    parse_lines(lx.lines, diags)
    assert [(d.line, d.code) for d in diags] == [(1, "unclosed-block")]
    lx, diags = lex("a 1\n}\n")
    parse_lines(lx.lines, diags)
    assert [(d.line, d.code) for d in diags] == [(2, "unmatched-brace")]


def test_crlf_line_endings():
    r = loads(INST.replace("\n", "\r\n") + "bogus 1\r\n")
    assert [(d.line, d.code) for d in r.diagnostics] == [(8, "unknown-keyword")]


def test_parameter_substitution():
    assert words("$A=10.0\n$B=${A}.0.1\nx $B y ${B}z $UNDEF ${UNDEF}\n") == [
        ["x", "10.0.0.1", "y", "10.0.0.1z", "$UNDEF", "${UNDEF}"]]


def test_substitution_is_at_use_time():
    assert words("$S=${SUB}\n$SUB=1\nx ${S}\n$SUB=2\nx ${S}\n") == [["x", "1"], ["x", "2"]]


def test_multiline_definition_expands_to_lines():
    text = "$BLOCK= \\\n  a 1 \\\n  b ${N}\n$N=7\n$BLOCK\n"
    lx, _ = lex(text)
    assert [[t.text for t in ln.tokens] for ln in lx.lines] == [["a", "1"], ["b", "7"]]
    assert {ln.line for ln in lx.lines} == {5}  # positioned where the definition was used


def test_self_referencing_definition_is_an_error_not_a_hang():
    _, diags = lex("$A=x ${A}\ny ${A}\n")
    assert [d.code for d in diags] == ["substitution-loop"]


def test_conditional_lines():
    text = "@node1 a 1\n@node2 b 2\n@^node1 c 3\n@^node2 d 4\n@node1\te 5\n"
    assert words(text, config_id="node1") == [["a", "1"], ["d", "4"], ["e", "5"]]
    assert words(text, config_id="node2") == [["b", "2"], ["c", "3"]]


def test_conditional_via_parameter():
    assert words("$IF=@node1\n$IF priority 240\n", config_id="node1") == [["priority", "240"]]
    assert words("$IF=@node1\n$IF priority 240\n", config_id="other") == []


def test_seq_and_lst_blocks():
    assert words("~SEQ(N, 0, 2) ip 10.0.${N}.1\n") == [["ip", "10.0.0.1"], ["ip", "10.0.1.1"], ["ip", "10.0.2.1"]]
    assert words("~SEQx(N, 0x9, 3, 0xf) ${N}\n") == [["9"], ["c"], ["f"]]
    assert words("~SEQ(N, 3) ${N}\n") == [["1"], ["2"], ["3"]]
    assert words("~LST({A, B}, {1,2},{3,4}) ${A}.${B}\n") == [["1.2"], ["3.4"]]
    assert words("~LST(A, x, y) ~LST(B, 1, 2) ${A}${B}\n") == [["x1"], ["x2"], ["y1"], ["y2"]]


def test_bad_sequence_is_reported():
    _, diags = lex("~SEQ(N, a, b) x\n")
    assert [(d.line, d.code) for d in diags] == [(1, "bad-sequence")]


def test_predefined_hash_and_bang_survive_comment_stripping():
    assert words('x a${_HASH}b ${_BANG}\n') == [["x", "a#b", "!"]]


def test_include_glob_relative_to_including_file(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "sub").mkdir()
    (tmp_path / "main.conf").write_text("include conf.d/*.conf\n")
    (tmp_path / "conf.d" / "a.conf").write_text(INST + "include sub/b.inc\n")
    (tmp_path / "conf.d" / "sub" / "b.inc").write_text("\n\nbogus_kw 1\n")
    r = load(str(tmp_path / "main.conf"))
    assert list(r.config.instances) == ["VI_1"]
    assert r.config.instances["VI_1"].where.file == str(tmp_path / "conf.d" / "a.conf")
    assert [(d.file, d.line, d.code) for d in r.diagnostics] == [
        (str(tmp_path / "conf.d" / "sub" / "b.inc"), 3, "unknown-keyword")]


def test_include_problems(tmp_path):
    (tmp_path / "loop.conf").write_text("include loop.conf\n")
    r = load(str(tmp_path / "loop.conf"))
    assert [(d.line, d.severity, d.code) for d in r.diagnostics] == [(1, "error", "include-loop")]
    (tmp_path / "m.conf").write_text("include nothing*.conf\nincludea none.conf\n")
    r = load(str(tmp_path / "m.conf"))
    assert [(d.line, d.severity, d.code) for d in r.diagnostics] == [
        (1, "warning", "include-no-match"), (2, "error", "include-no-match")]


def test_unreadable_main_file_gives_no_config(tmp_path):
    r = load(str(tmp_path / "missing.conf"))
    assert r.config is None and not r.ok
    assert [d.code for d in r.diagnostics] == ["unreadable-file"]
    r = load(str(tmp_path))  # a directory: keepalived skips it, so nothing to run
    assert r.config is None and [d.code for d in r.diagnostics] == ["not-regular-file"]


def test_split_command_follows_keepalived_quoting():
    assert split_command("/usr/bin/pgrep chime-server") == ("/usr/bin/pgrep", "chime-server")
    assert split_command("/bin/sh -c 'echo a  b' x") == ("/bin/sh", "-c", "echo a  b", "x")
    assert split_command("  a   ''  b ") == ("a", "", "b")


def test_script_argv_from_quoted_and_unquoted_forms():
    text = ('vrrp_script a {\n script "/bin/nc -zv localhost 8801"\n}\n'
            "vrrp_script b {\n script /bin/nc -zv localhost 8801\n}\n"
            "vrrp_script c {\n script \"/bin/sh -c 'exit 1'\"  # or \"nc -zv x\"\n}\n")
    c = loads(text).config
    assert c.vrrp_scripts["a"].script == c.vrrp_scripts["b"].script == ("/bin/nc", "-zv", "localhost", "8801")
    assert c.vrrp_scripts["c"].script == ("/bin/sh", "-c", "exit 1")


def test_notify_command_then_user_and_group():
    text = ("vrrp_instance V {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.1\n }\n"
            ' notify_master "/bin/n.sh master \'a b\'" nobody nogroup\n notify_backup /bin/n.sh\n'
            " unicast_peer {\n  10.0.0.2 min_ttl 2 max_ttl 9\n  10.0.0.3\n }\n}\n")
    r = loads(text, config_id="x")
    inst = r.config.instances["V"]
    assert inst.notify_master == ("/bin/n.sh", "master", "a b")
    assert inst.script_users == {"notify_master": ("nobody", "nogroup")}
    assert inst.notify_backup == ("/bin/n.sh",)
    assert [(p.address, p.min_ttl, p.max_ttl) for p in inst.unicast_peers] == [("10.0.0.2", 2, 9), ("10.0.0.3", None, None)]
    # notify_backup runs as root without script security; notify_master does not
    assert [(d.line, d.code) for d in r.diagnostics] == [(8, "script-security")]


def test_overlong_line_is_skipped_with_an_error():
    r = loads("bogus 1\n" + "x" * 70000 + "\n" + INST)
    assert [(d.line, d.code) for d in r.diagnostics] == [(1, "unknown-keyword"), (2, "line-too-long")]
    assert list(r.config.instances) == ["VI_1"]


def test_include_with_braces_and_quotes(tmp_path):
    from chimeha.config.lexer import brace_expand

    assert brace_expand("{foo/{,cat,dog},bar}") == ["foo/", "foo/cat", "foo/dog", "bar"]
    assert brace_expand("a{b") == ["a{b"]
    (tmp_path / "x.conf").write_text("global_defs {\n router_id X\n}\n")
    (tmp_path / "y.conf").write_text(INST)
    (tmp_path / "main.conf").write_text('include "{x,y}.conf"\n')
    r = load(str(tmp_path / "main.conf"))
    assert r.diagnostics == []
    assert r.config.global_defs.router_id == "X" and list(r.config.instances) == ["VI_1"]


def test_deep_nesting_is_an_error_not_a_crash():
    r = loads("a {\n" * 5000 + "}\n" * 5000)
    assert r.config is not None
    assert [(d.line, d.code) for d in r.diagnostics if d.severity == "error"] == [(65, "too-deep")]
