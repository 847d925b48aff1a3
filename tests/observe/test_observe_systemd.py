"""packaging/systemd/chime-ha.service: valid for systemd, and its commands are ones chime-ha accepts."""

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chimeha.cli import build_parser

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "chime-ha.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return parser


def test_type_notify_with_reload_and_directories():
    svc = unit()["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"
    assert svc["RuntimeDirectory"] == "chime-ha" and svc["StateDirectory"] == "chime-ha"
    assert svc["KillMode"] == "mixed"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def _argv(line: str) -> list[str]:
    env = {"${CHIME_HA_CONFIG}": "/etc/keepalived/keepalived.conf", "$CHIME_HA_OPTIONS": ""}
    for k, v in env.items():
        line = line.replace(k, v)
    argv = shlex.split(line)
    assert argv[0] == "/usr/bin/chime-ha"
    return argv[1:]


def test_exec_lines_parse_with_the_real_cli():
    svc = unit()["Service"]
    reload_args = build_parser().parse_args(_argv(svc["ExecReload"]))
    assert reload_args.command == "reload" and reload_args.control == "/run/chime-ha/control.sock"
    start_argv = _argv(svc["ExecStart"])
    assert start_argv[0] == "run"
    try:
        start_args = build_parser().parse_args(start_argv)
    except SystemExit:
        pytest.fail(f"`chime-ha {' '.join(start_argv)}` is rejected by the CLI")
    assert start_args.control == "/run/chime-ha/control.sock"  # the socket `chime-ha reload` talks to
    assert start_args.journal.startswith("/var/lib/chime-ha/")  # inside StateDirectory=


def test_systemd_analyze_verify_is_clean(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("needs systemd-analyze")
    # verify checks that the binaries exist: point them at this checkout's chime-ha.
    exe = str(Path(sys.executable).with_name("chime-ha"))
    copy = tmp_path / "chime-ha.service"
    copy.write_text(UNIT.read_text().replace("/usr/bin/chime-ha", exe))
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
