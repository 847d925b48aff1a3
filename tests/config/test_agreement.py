"""chime-ha check and ``keepalived -t`` agree on accept vs reject.

keepalived -t fails (exit 5) on every problem it logs, including those it
works around; chime-ha only fails on errors and *warns* about the rest.  The
codes of those warnings are listed in ``KEEPALIVED_REPORTS``, so keepalived's
verdict is predicted as: reject iff chime-ha reports an error or a warning
whose code is in that set.  Corpus files marked ``# keepalived: differs``
are documented differences (docs/config.md) and excluded.
"""

from __future__ import annotations

import glob
import os

import pytest

from chimeha.config import load
from chimeha.config.validate import KEEPALIVED_REPORTS

from .corpus_util import corpus_files, documented_difference
from .keepalived_util import KEEPALIVED_ACCEPT, keepalived_test, prepare_host

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

CONFIG_ID = "chimeha-test"


def predicted_keepalived_accepts(result) -> bool:
    return result.ok and not any(d.code in KEEPALIVED_REPORTS for d in result.diagnostics)


def test_corpus_agrees_with_keepalived(topology):
    host = prepare_host(topology)
    disagreements = []
    compared = 0
    for path in corpus_files():
        if documented_difference(path):
            continue
        rc, out = keepalived_test(host, path, CONFIG_ID)
        result = load(str(path), config_id=CONFIG_ID)
        compared += 1
        if (rc in KEEPALIVED_ACCEPT) != predicted_keepalived_accepts(result):
            ours = "; ".join(f"{d.line}:{d.code}" for d in result.diagnostics) or "clean"
            disagreements.append(f"{path.name}: keepalived rc={rc} [{out.strip()[:300]}] vs chime-ha [{ours}]")
    assert compared >= 40
    assert not disagreements, "\n".join(disagreements)


def test_documented_differences_really_differ(topology):
    """Each documented difference is real: the two verdicts differ."""
    host = prepare_host(topology)
    marked = [p for p in corpus_files() if documented_difference(p)]
    assert marked
    for path in marked:
        rc, out = keepalived_test(host, path, CONFIG_ID)
        assert (rc in KEEPALIVED_ACCEPT) != load(str(path), config_id=CONFIG_ID).ok, (path.name, rc, out)


SAMPLES = sorted(glob.glob("/usr/share/doc/keepalived/samples/keepalived.conf.*"))


@pytest.mark.skipif(not SAMPLES, reason="keepalived samples not installed")
def test_samples_keepalived_accepts_means_no_error(topology):
    host = prepare_host(topology)
    accepted = 0
    for path in SAMPLES:
        config_id = "high" if path.endswith("conditional_conf") else CONFIG_ID
        rc, out = keepalived_test(host, path, config_id)
        result = load(path, config_id=config_id)
        assert result.config is not None, path
        if rc in KEEPALIVED_ACCEPT:
            accepted += 1
            assert result.ok, f"{os.path.basename(path)}: " + "; ".join(map(str, result.errors))
    assert accepted >= 10
