import pytest

from chimeha.lab.netns import Topology, list_own_namespaces

pytestmark = pytest.mark.system


def test_hosts_reach_each_other_and_link_cut_isolates(topology):
    a = topology.add_host("a", "192.168.231.11/24", ifname="ens160")
    b = topology.add_host("b", "192.168.231.12/24", ifname="ens160")
    assert a.addresses_on() >= {"192.168.231.11"}
    assert b.run("ping -c1 -W1 192.168.231.11", check=False).returncode == 0
    a.link_down()
    assert b.run("ping -c1 -W1 192.168.231.11", check=False).returncode != 0
    a.link_up()
    assert b.run("ping -c1 -W2 192.168.231.11", check=False).returncode == 0


def test_close_removes_every_namespace_and_process():
    topo = Topology("c")
    topo.open()
    host = topo.add_host("h", "192.168.231.21/24")
    proc = host.popen(["sleep", "60"])
    mine = {n for n in list_own_namespaces() if n.startswith(topo.prefix)}
    assert mine == {topo.switch_ns, host.netns}
    topo.close()
    assert proc.poll() is not None
    assert not [n for n in list_own_namespaces() if n.startswith(topo.prefix)]
