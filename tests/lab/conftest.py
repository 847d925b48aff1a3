"""Fixtures shared by the lab tests.

A lab run takes ~20 s, so the chime-ha active-standby run is made once per
session and its report shared: test_lab.py checks that it passes,
test_lab_vs_simulate.py compares its measured VIP moves with the simulator.
"""

import shutil

import pytest

from chimeha.lab.cluster import chime_ha_available
from chimeha.lab.runner import run_lab

TAG = "tlab"  # never "lab": `chime-ha lab down` must not touch test runs


@pytest.fixture(scope="session")
def chime_ha_lab_report():
    """The report of one active-standby lab run with chime-ha on both servers (torn down already)."""
    why = chime_ha_available()
    if why:
        pytest.skip(why)
    report, _ = run_lab("active-standby", {"server1": "chime-ha", "server2": "chime-ha"}, tag=TAG)
    yield report
    if report.logdir:  # kept because the run failed: the report quoted what mattered
        shutil.rmtree(report.logdir, ignore_errors=True)
