"""lab.node's child-process lookups (used by nodes, the BGP lab and the failover bench)."""

import os
import signal
import subprocess

import pytest

from chimeha.lab.netns import NetnsError
from chimeha.lab.node import child_pids, first_child


def test_first_child_is_the_forked_process_and_a_lone_process_has_none():
    parent = subprocess.Popen(["/bin/sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    lone = subprocess.Popen(["sleep", "30"])
    forked = None
    try:
        forked = int(parent.stdout.readline())
        assert first_child(parent.pid, "the sleep") == forked
        assert child_pids(parent.pid) == [forked]
        assert child_pids(lone.pid) == []
        with pytest.raises(NetnsError, match=rf"cannot find the nothing \(pid {lone.pid} forked no child"):
            first_child(lone.pid, "the nothing", timeout=0.05)
    finally:
        if forked is not None:
            os.kill(forked, signal.SIGKILL)  # the sleep our sh started; the sh's wait then returns
        for p in (parent, lone):
            p.kill()
            p.wait()
        parent.stdout.close()
