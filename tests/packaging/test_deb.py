"""The .deb from packaging/deb/build.sh: installs offline with apt-get, works, purges to nothing.

System test: it installs a package on this machine (and removes it in a finally).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pkghelp import ROOT

pytestmark = pytest.mark.system

APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]
ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
# Where a package's files and anything it writes at run time can live.
ROOTS = ("/etc", "/usr", "/lib", "/var/lib", "/var/log", "/opt", "/run", "/srv")


def _installed(pkg: str) -> bool:
    q = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return q.returncode == 0 and "installed" in q.stdout and "not-installed" not in q.stdout


def _chime_paths() -> set[str]:
    """Every path whose name mentions chime (outside dpkg's and apt's own bookkeeping)."""
    found = set()
    for top in ROOTS:
        for dirpath, dirnames, filenames in os.walk(top):
            if dirpath.startswith(("/var/lib/dpkg", "/var/lib/apt", "/proc", "/run/netns")):
                dirnames[:] = []
                continue
            for name in dirnames + filenames:
                if "chime" in name.lower():
                    found.add(os.path.join(dirpath, name))
    return found


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    for tool in ("dpkg-deb", "apt-get", "unshare"):
        if not shutil.which(tool):
            pytest.fail(f"needs {tool}")
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run([str(ROOT / "packaging" / "deb" / "build.sh"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    debs = list(out.glob("chime-ha_*.deb"))
    assert len(debs) == 1 and Path(proc.stdout.strip().splitlines()[-1]) == debs[0]
    return debs[0]


def test_package_metadata_and_contents(deb):
    info = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Depends", "Version"],
                          capture_output=True, text=True, check=True).stdout
    assert "Package: chime-ha" in info and "python3 (>= 3.11)" in info and "python3 (<< 3.12)" in info
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    paths = {ln.split()[5].lstrip(".") for ln in listing.splitlines()}
    for need in ("/usr/bin/chime-ha", "/lib/systemd/system/chime-ha.service", "/etc/default/chime-ha",
                 "/usr/share/chime-ha/keepalived.service", "/usr/share/doc/chime-ha/copyright",
                 "/usr/share/doc/chime-ha/README.md", "/usr/lib/chime-ha/pyvenv.cfg"):
        assert need in paths, need
    site = "/usr/lib/chime-ha/lib/python3.11/site-packages/"
    top = {p[len(site):].split("/")[0] for p in paths if p.startswith(site) and len(p) > len(site)}
    assert {"chimeha", "pyroute2", "prometheus_client", "uvloop", "dns"} <= top
    assert not top & {"pytest", "_pytest", "hypothesis", "pip", "build", "setuptools"}, top
    # byte-compiled at build time, so running it writes nothing dpkg does not know of
    assert any(p.endswith(".pyc") and "/chimeha/" in p for p in paths)
    assert not any("/tmp/" in p for p in paths)
    conffiles = subprocess.run(["dpkg-deb", "-I", str(deb), "conffiles"], capture_output=True, text=True).stdout
    assert conffiles.split() == ["/etc/default/chime-ha"]


def test_installs_offline_works_and_purges_to_nothing(deb, tmp_path):
    if _installed("chime-ha"):
        pytest.fail("chime-ha is already installed on this machine: not touching an install this test did not make")
    before = _chime_paths()
    # offline: apt-get runs in an empty network namespace, so any download would fail
    inst = subprocess.run(["unshare", "--net", "--", *APT, "install", str(deb)],
                          capture_output=True, text=True, env=ENV, timeout=600)
    try:
        assert inst.returncode == 0, inst.stdout[-2000:] + inst.stderr[-2000:]
        assert _installed("chime-ha")
        owned = subprocess.run(["dpkg-query", "-L", "chime-ha"], capture_output=True, text=True,
                               check=True).stdout.split()
        version = subprocess.run(["/usr/bin/chime-ha", "--version"], capture_output=True, text=True, timeout=60)
        expected = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                                  check=True).stdout.strip().rsplit("-", 1)[0]
        assert version.returncode == 0 and version.stdout.strip() == f"chime-ha {expected}"
        example = "/usr/share/doc/chime-ha/examples/active-standby-server1.conf"
        ok = subprocess.run(["/usr/bin/chime-ha", "check", "-f", example], capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        bad = tmp_path / "bad.conf"
        bad.write_text("vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 300\n}\n")
        fail = subprocess.run(["/usr/bin/chime-ha", "check", "-f", str(bad)], capture_output=True, text=True,
                              timeout=60)
        assert fail.returncode == 1 and f"{bad}:3:" in fail.stdout
        # the lab's helpers run as `python -m chimeha...` with the package's interpreter
        mod = subprocess.run(["/usr/lib/chime-ha/bin/python3", "-c",
                              "import chimeha.lab.standins, chimeha.runtime.daemon, chimeha.observe.metrics, "
                              "pyroute2, uvloop, dns.message, prometheus_client; print(chimeha.__file__)"],
                             capture_output=True, text=True, timeout=60)
        assert mod.returncode == 0 and mod.stdout.startswith("/usr/lib/chime-ha/"), mod.stderr
        if shutil.which("systemd-analyze"):
            for unit in ("/lib/systemd/system/chime-ha.service", "/usr/share/chime-ha/keepalived.service"):
                ver = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True, timeout=60)
                assert ver.returncode == 0 and ver.stderr.strip() == "", f"{unit}: {ver.stderr}"
        # what the daemon's unit creates at run time, so that purge is shown to remove it too
        os.makedirs("/var/lib/chime-ha", exist_ok=True)
        Path("/var/lib/chime-ha/journal.jsonl").write_text("{}\n")
    finally:
        purge = subprocess.run([*APT, "purge", "chime-ha"], capture_output=True, text=True, env=ENV, timeout=600)
    assert purge.returncode == 0, purge.stderr
    assert not _installed("chime-ha")
    leftover = [p for p in owned if os.path.lexists(p) and not os.path.isdir(p)]
    assert leftover == [], leftover
    assert _chime_paths() - before == set()
