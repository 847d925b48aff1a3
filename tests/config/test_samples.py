"""Every keepalived sample config parses (no keepalived binary needed; the
comparison with `keepalived -t` is in test_agreement.py)."""

from __future__ import annotations

import glob
import os

import pytest

from chimeha.config import load

SAMPLES = sorted(glob.glob("/usr/share/doc/keepalived/samples/keepalived.conf.*"))
# Samples keepalived -t itself rejects, and why (measured, see docs/config.md).
BROKEN_UPSTREAM = {
    "keepalived.conf.vrrp.rules": {"invalid-rule"},  # "to 192.168.100./24"
}


@pytest.mark.skipif(not SAMPLES, reason="Debian keepalived samples not installed")
@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_sample_parses(path):
    name = os.path.basename(path)
    config_id = "high" if name.endswith("conditional_conf") else "chimeha-test"
    result = load(path, config_id=config_id)
    assert result.config is not None
    assert result.config.instances or result.config.virtual_servers
    assert {d.code for d in result.errors} == BROKEN_UPSTREAM.get(name, set())
    for d in result.diagnostics:
        assert d.file == path and d.line > 0


def test_conditional_sample_depends_on_config_id():
    path = "/usr/share/doc/keepalived/samples/keepalived.conf.conditional_conf"
    if not os.path.exists(path):
        pytest.skip("sample not installed")
    high = load(path, config_id="high").config
    low = load(path, config_id="low").config
    assert high.instances["VI_0"].priority == 170 and low.instances["VI_0"].priority == 85
    assert high.vrrp_scripts["check_VI_0"].script == ("/etc/keepalived/scripts/check_high_VI_0.sh",)
    assert high.options["net_namespace"] == (("high",),) and low.options["net_namespace"] == (("low",),)
    assert not load(path, config_id="other").ok  # no script line survives: keepalived drops the script too
