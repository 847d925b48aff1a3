"""`chime-ha check`: exit status, text and JSON output, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chimeha.cli import main

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
CORPUS = Path(__file__).parent / "corpus"


def run(capsys, *argv):
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_seed_pair_exit_0_with_warnings(capsys):
    code, out, err = run(capsys, "-f", str(SEED / "active-active-server1.conf"),
                         "-f", str(SEED / "active-active-server2.conf"))
    assert code == 0
    lines = out.splitlines()
    assert f"{SEED / 'active-active-server1.conf'}:25: warning: " in lines[1]
    assert lines[1].endswith("[bare-weight]")
    assert any(line.endswith("[peer-same-priority]") for line in lines)
    assert "0 error(s)" in err


def test_json_output(capsys):
    code, out, _ = run(capsys, "--json", "-f", str(SEED / "active-standby-server1.conf"))
    assert code == 0
    data = json.loads(out)
    assert data == [{"file": str(SEED / "active-standby-server1.conf"), "line": 2, "severity": "warning",
                     "code": "script-security", "message": data[0]["message"]}]
    assert "enable_script_security" in data[0]["message"]


def test_error_exit_1(capsys):
    code, out, _ = run(capsys, "-f", str(CORPUS / "priority-too-high.conf"))
    assert code == 1
    assert f"{CORPUS / 'priority-too-high.conf'}:6: error: " in out and "[out-of-range]" in out


def test_one_bad_node_fails_the_set(capsys):
    code, _, _ = run(capsys, "-f", str(SEED / "active-standby-server1.conf"), "-f", "/nonexistent.conf")
    assert code == 1


def test_usage_errors_exit_2(capsys):
    assert main(["check"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["check", "--no-such-option"])
    assert exc.value.code == 2


@pytest.mark.parametrize("content", [b"\x00\xff\xfe garbage {{{ \n}}}}", b"vrrp_instance {", b"$A=${A}${A}\n$A\n",
                                     "virtual_server 1.2.3.4 80 { real_server ; }".encode()])
def test_garbage_never_tracebacks(tmp_path, capsys, content):
    p = tmp_path / "g.conf"
    p.write_bytes(content)
    code, out, err = run(capsys, "--json", "-f", str(p))
    assert code in (0, 1)
    assert code == 1 or content.startswith(b"\x00")
    assert "Traceback" not in out + err
    assert isinstance(json.loads(out), list)


def test_console_script_subprocess():
    proc = subprocess.run([str(Path(sys.executable).parent / "chime-ha"), "check", "-f", str(CORPUS / "ok-minimal.conf")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "0 error(s), 0 warning(s): ok" in proc.stderr


def test_source_lines_shown(capsys):
    code, out, _ = run(capsys, "-s", "-f", str(SEED / "active-active-server1.conf"))
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.endswith("[bare-weight]"))
    assert lines[i + 1] == "       25 |         weight"


def test_operator_errors_are_one_line_never_a_traceback(monkeypatch, capsys, tmp_path):
    from chimeha import cli
    from chimeha.cli import check as check_cmd
    from chimeha.errors import ConfigError, UsageError

    conf = tmp_path / "k.conf"
    conf.write_text("")
    for exc, status in ((ConfigError("k.conf:3: bad"), 1), (UsageError("no such option"), 2)):
        def boom(args, exc=exc):
            raise exc
        monkeypatch.setattr(check_cmd, "run", boom)
        assert cli.main(["check", "-f", str(conf)]) == status
        err = capsys.readouterr().err
        assert err == f"chime-ha check: {exc}\n"


def test_every_subcommand_module_imports():
    # No ImportError guard hides a broken subcommand: building the parser imports them all.
    from chimeha import cli

    parser = cli.build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert names == set(cli.SUBCOMMANDS)
