"""Every corpus config yields exactly the diagnostics it declares, at the declared lines."""

from __future__ import annotations

import pytest

from chimeha.config import load

from .corpus_util import corpus_files, expectations

FILES = corpus_files()


def test_corpus_is_big_enough():
    assert len(FILES) >= 40
    assert sum(1 for f in FILES if expectations(f)) >= 40


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_corpus_config(path):
    result = load(str(path), config_id="chimeha-test")
    assert result.config is not None
    got = {(d.line, d.severity, d.code) for d in result.diagnostics if d.file == str(path)}
    assert got == expectations(path), "\n".join(str(d) for d in result.diagnostics)
    assert result.ok == (not any(sev == "error" for _, sev, _ in expectations(path)))
    for d in result.diagnostics:
        assert d.message and str(d).startswith(f"{d.file}:{d.line}: {d.severity}: ")
