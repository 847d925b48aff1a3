"""The wheel: built with `python -m build`, runtime dependencies only, installs offline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pkghelp import ROOT, build_wheel, runtime_pins

TEST_TOOLS = {"pytest", "pytest-asyncio", "pytest-timeout", "hypothesis", "build", "pyproject-hooks"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    return [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")]


def test_runtime_requirements_are_what_the_code_imports(wheel):
    runtime = {_norm(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in _requires(wheel) if "extra ==" not in r}
    assert not runtime & TEST_TOOLS, f"test tools among the runtime dependencies: {runtime & TEST_TOOLS}"
    # each runtime dependency is imported by the daemon's code (no dead weight)
    modules = {"pyroute2": "pyroute2", "prometheus-client": "prometheus_client", "uvloop": "uvloop", "dnspython": "dns"}
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "chimeha").rglob("*.py"))
    for dist in runtime:
        mod = modules.get(dist, dist.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {mod}\b", source, re.M), f"{dist} is required but never imported"
    # and the wheel carries the package data the daemon reads (the status page)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert any(n.startswith("chimeha/observe/statuspage/") and n.endswith(".html") for n in names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_wheel_installs_offline_into_a_fresh_venv(wheel, tmp_path):
    pins = runtime_pins(wheel)
    wheels = tmp_path / "wheels"
    # 1. fetch the pinned runtime dependencies (the only step that may use a package index)
    dl = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                         "--only-binary=:all:", "--no-deps", "-d", str(wheels), *pins],
                        capture_output=True, text=True, timeout=300)
    assert dl.returncode == 0, dl.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # 2. install with no index at all: pip's own configuration (extra indexes, find-links)
    #    is switched off, and under root the install runs in an empty network namespace.
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    cmd = [str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(wheels), str(wheel)]
    if os.geteuid() == 0 and shutil.which("unshare"):
        cmd = ["unshare", "--net", "--", *cmd]
    inst = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert inst.returncode == 0, inst.stderr
    freeze = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True, text=True,
                            env=env, timeout=60).stdout.split()
    installed = {_norm(ln.split("==")[0]): ln.split("==")[1] for ln in freeze if "==" in ln}
    installed.pop("pip", None), installed.pop("setuptools", None), installed.pop("wheel", None)
    expected = {_norm(p.split("==")[0]): p.split("==")[1] for p in pins}
    expected["chimeha"] = installed.get("chimeha", "missing")
    assert installed == expected
    exe = venv / "bin" / "chime-ha"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"chime-ha {installed['chimeha']}"
    seed = ROOT / "examples" / "seed" / "active-standby-server1.conf"
    ok = subprocess.run([str(exe), "check", "-f", str(seed)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 300\n}\n")
    fail = subprocess.run([str(exe), "check", "-f", str(bad)], capture_output=True, text=True, timeout=60)
    assert fail.returncode == 1 and f"{bad}:3:" in fail.stdout
    # every module imports with only the runtime dependencies present
    probe = ("import importlib, pkgutil, chimeha\n"
             "bad = []\n"
             "for m in pkgutil.walk_packages(chimeha.__path__, 'chimeha.'):\n"
             "    try: importlib.import_module(m.name)\n"
             "    except ImportError as e: bad.append(f'{m.name}: {e}')\n"
             "print('\\n'.join(bad)); raise SystemExit(1 if bad else 0)\n")
    imp = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert imp.returncode == 0, imp.stdout + imp.stderr
