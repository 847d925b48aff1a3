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

from chimeha.cli.keepalived_compat import test_status as keepalived_status
from chimeha.config import load

from .corpus_util import corpus_files, documented_difference
from .keepalived_util import KEEPALIVED_ACCEPT, keepalived_test, prepare_host

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

CONFIG_ID = "chimeha-test"


def predicted_keepalived_accepts(result) -> bool:
    # keepalived -t's own exit status as chime-ha predicts it (a script-security finding outranks
    # the other reports: exit 6, which counts as accepted)
    return keepalived_status(result.diagnostics) in KEEPALIVED_ACCEPT


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


MUTATION_VALUES = ["0", "-1", "256", "65536", "1.5", "0.001", "abc", "3", "255", "1", "40.96", "on", "2147483648"]
# Lines whose mutation would test the host rather than the language (difference 8 in docs/config.md).
HOST_SPECIFIC = ("interface", "user", "script", "misc_path", "include")


def _mutations():
    import random
    import re

    rng = random.Random(20261126)  # fixed: the same mutants every run, no flakiness
    sources = [p for p in corpus_files() if not documented_difference(p)]
    out = []
    while len(out) < 60:
        path = rng.choice(sources)
        lines = path.read_text().split("\n")
        cand = [i for i, ln in enumerate(lines)
                if re.match(r"^\s+[a-z_]+\s+\S", ln) and "#" not in ln and not ln.split()[0].startswith(HOST_SPECIFIC)]
        if not cand:
            continue
        i = rng.choice(cand)
        m = re.match(r"^(\s+[a-z_]+\s+)(\S+)(.*)$", lines[i])
        lines[i] = m.group(1) + rng.choice(MUTATION_VALUES) + m.group(3)
        out.append((f"{path.stem}-{len(out)}.conf", "\n".join(lines)))
    return out


def test_mutated_corpus_agrees_with_keepalived(topology, tmp_path):
    """60 fixed mutants (a value replaced by a boundary, out-of-range or malformed one)."""
    host = prepare_host(topology)
    disagreements = []
    for name, text in _mutations():
        path = tmp_path / name
        path.write_text(text)
        rc, out = keepalived_test(host, path, CONFIG_ID)
        result = load(str(path), config_id=CONFIG_ID)
        if any(d.code == "undefined-group" for d in result.diagnostics):
            continue  # documented difference 5
        if (rc in KEEPALIVED_ACCEPT) != predicted_keepalived_accepts(result):
            ours = "; ".join(f"{d.line}:{d.code}" for d in result.diagnostics) or "clean"
            disagreements.append(f"{name}: keepalived rc={rc} [{out.strip()[:300]}] vs chime-ha [{ours}]")
    assert not disagreements, "\n".join(disagreements)
