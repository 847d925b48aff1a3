"""The VMAC link manager against a fake pyroute2 and fake sysctls (what is asked of the kernel, in order)."""

import concurrent.futures

import pytest

from chimeha.runtime.vmac import LinkError, LinkManager
from chimeha.vrrp.vmac import Link

LINK = Link("macvlan", "vrrp.7", "eth0", 4, mac="00:00:5e:00:01:07")


class Attrs(dict):
    def get_attr(self, key):
        return self.get(key)


class FakeIPR:
    def __init__(self):
        self.ifs = {"eth0": {"index": 2, "ifi_type": 1}, "lo": {"index": 1, "ifi_type": 772}}
        self.calls = []

    def link_lookup(self, ifname):
        return [self.ifs[ifname]["index"]] if ifname in self.ifs else []

    def _by_index(self, idx):
        return next((n, d) for n, d in self.ifs.items() if d["index"] == idx)

    def get_links(self, idx):
        name, d = self._by_index(idx)
        msg = Attrs(IFLA_IFNAME=name, IFLA_LINK=d.get("link"), IFLA_ADDRESS=d.get("mac"))
        msg["ifi_type"] = d["ifi_type"]
        if "kind" in d:
            msg["IFLA_LINKINFO"] = Attrs(IFLA_INFO_KIND=d["kind"],
                                         IFLA_INFO_DATA=Attrs(IFLA_MACVLAN_MODE=d.get("mode")))
        return [msg]

    def link(self, op, **kw):
        self.calls.append((op, kw))
        if op == "add":
            if kw["kind"] == "ipvlan":
                raise OSError(95, "Operation not supported")
            self.ifs[kw["ifname"]] = {"index": 10 + len(self.ifs), "ifi_type": 1, "kind": kw["kind"],
                                      "link": kw["link"], "mac": kw.get("address"), "mode": kw.get("macvlan_mode")}
        elif op == "del":
            name, _ = self._by_index(kw["index"])
            del self.ifs[name]

    def addr(self, op, **kw):
        self.calls.append(("addr-" + op, kw))


class FakeManager:
    def __init__(self):
        self.ipr = FakeIPR()

    def raw_addresses(self, index, family):
        return [{"IFA_ADDRESS": "fe80::1"}]


def make(sysctls=None):
    m = FakeManager()
    values = dict(sysctls or {})
    writes = []

    def submit(fn, *args):
        fut = concurrent.futures.Future()
        try:
            fut.set_result(fn(m, *args))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut

    def write(path, value):
        writes.append((path, value))
        values[path] = value
        return True

    lm = LinkManager(submit, read=values.get, write=write, nft=NFT.append)  # never the real nft here
    return lm, m.ipr, values, writes


NFT: list = []


def test_creates_a_private_macvlan_with_the_virtual_mac_and_keepaliveds_sysctls():
    lm, ipr, values, writes = make({"ipv4/conf/eth0/arp_ignore": 0, "ipv4/conf/eth0/arp_filter": 0,
                                    "ipv4/conf/all/rp_filter": 0})
    lm.ensure([LINK])
    assert ipr.calls[0] == ("add", {"ifname": "vrrp.7", "link": 2, "kind": "macvlan", "macvlan_mode": "private",
                                    "address": "00:00:5e:00:01:07"})
    assert ipr.calls[-1] == ("set", {"index": ipr.ifs["vrrp.7"]["index"], "state": "up"})  # configured, then up
    assert {p: v for p, v in writes if "vrrp.7" in p} == {
        "ipv6/conf/vrrp.7/addr_gen_mode": 1, "ipv6/conf/vrrp.7/disable_ipv6": 1, "ipv4/conf/vrrp.7/arp_ignore": 1,
        "ipv4/conf/vrrp.7/accept_local": 1, "ipv4/conf/vrrp.7/rp_filter": 0,
        "ipv4/conf/vrrp.7/promote_secondaries": 1}
    assert values["ipv4/conf/eth0/arp_ignore"] == 1 and values["ipv4/conf/eth0/arp_filter"] == 1
    lm.remove().result()
    assert "vrrp.7" not in ipr.ifs
    assert values["ipv4/conf/eth0/arp_ignore"] == 0 and values["ipv4/conf/eth0/arp_filter"] == 0  # restored


def test_base_sysctls_are_restored_only_when_the_last_link_on_it_goes():
    lm, ipr, values, _ = make({"ipv4/conf/eth0/arp_ignore": 2, "ipv4/conf/eth0/arp_filter": 0})
    other = Link("macvlan", "vrrp.8", "eth0", 4, mac="00:00:5e:00:01:08")
    lm.ensure([LINK, other])
    lm.remove(["vrrp.7"]).result()
    assert values["ipv4/conf/eth0/arp_ignore"] == 1
    lm.remove().result()
    assert values["ipv4/conf/eth0/arp_ignore"] == 2


def test_rp_filter_all_is_cleared_and_restored_like_keepalived(monkeypatch, tmp_path):
    import chimeha.runtime.vmac as mod

    (tmp_path / "ipv4/conf").mkdir(parents=True)
    for n in ("all", "default", "eth0", "lo"):
        (tmp_path / "ipv4/conf" / n).mkdir()
    monkeypatch.setattr(mod, "SYSCTL", str(tmp_path))
    lm, ipr, values, _ = make({"ipv4/conf/all/rp_filter": 2, "ipv4/conf/default/rp_filter": 0,
                               "ipv4/conf/eth0/rp_filter": 1, "ipv4/conf/lo/rp_filter": 2})
    lm.ensure([LINK])
    assert values["ipv4/conf/all/rp_filter"] == 0
    assert (values["ipv4/conf/default/rp_filter"], values["ipv4/conf/eth0/rp_filter"]) == (2, 2)
    assert values["ipv4/conf/vrrp.7/rp_filter"] == 0
    lm.remove().result()
    assert [values[f"ipv4/conf/{n}/rp_filter"] for n in ("all", "default", "eth0", "lo")] == [2, 0, 1, 2]


def test_an_existing_right_link_is_adopted_a_wrong_one_recreated_another_kind_refused():
    lm, ipr, _, _ = make()
    ipr.ifs["vrrp.7"] = {"index": 40, "ifi_type": 1, "kind": "macvlan", "link": 2, "mac": "00:00:5e:00:01:07",
                         "mode": "private"}
    lm.ensure([LINK])
    assert not [c for c in ipr.calls if c[0] in ("add", "del")] and ipr.ifs["vrrp.7"]["index"] == 40
    ipr.ifs["vrrp.7"]["mac"] = "02:00:00:00:00:01"
    lm.ensure([LINK])
    assert [c[0] for c in ipr.calls if c[0] in ("add", "del")] == ["del", "add"]
    assert ipr.ifs["vrrp.7"]["mac"] == "00:00:5e:00:01:07"
    ipr.ifs["vrrp.9"] = {"index": 50, "ifi_type": 1}
    with pytest.raises(LinkError, match="vrrp.9: interface exists and is not a macvlan"):
        lm.ensure([Link("macvlan", "vrrp.9", "eth0", 4, mac="00:00:5e:00:01:09")])
    assert "vrrp.9" in ipr.ifs  # never deleted


def test_errors_name_the_link_and_the_reason():
    lm, ipr, _, _ = make()
    with pytest.raises(LinkError, match="vrrp.7: cannot create the macvlan: its interface eth9 does not exist"):
        lm.ensure([Link("macvlan", "vrrp.7", "eth9", 4, mac="00:00:5e:00:01:07")])
    lm.ensure([Link("macvlan", "vrrp.7", "eth9", 4, mac="00:00:5e:00:01:07")], allow_missing_base=True)
    with pytest.raises(LinkError, match="need an Ethernet interface; lo is not one"):
        lm.ensure([Link("macvlan", "vrrp.7", "lo", 4, mac="00:00:5e:00:01:07")])
    with pytest.raises(LinkError, match="ipv0: cannot create the ipvlan on eth0: Operation not supported"):
        lm.ensure([Link("ipvlan", "ipv0", "eth0", 4, address="10.0.0.5/24")])


def test_ipv6_vmac_gets_the_base_link_local_and_keeps_ipv6():
    lm, ipr, values, _ = make()
    lm.ensure([Link("macvlan", "vrrp.7", "eth0", 6, mac="00:00:5e:00:02:07", ipv6=True)])
    assert values["ipv6/conf/vrrp.7/disable_ipv6"] == 0 and values["ipv6/conf/vrrp.7/addr_gen_mode"] == 1
    adds = [kw for op, kw in ipr.calls if op == "addr-add"]
    assert adds == [{"index": ipr.ifs["vrrp.7"]["index"], "address": "fe80::1", "prefixlen": 64, "flags": 2}]
    assert "ipv4/conf/vrrp.7/arp_ignore" not in values  # IPv4 sysctls are for IPv4 instances


def test_igmp_and_mld_reports_of_a_vmac_leave_by_its_base():
    from chimeha.runtime.vmac import firewall_script

    NFT.clear()
    lm, ipr, _, _ = make()
    lm.ensure([LINK, Link("macvlan", "vrrp6.7", "eth0", 6, mac="00:00:5e:00:02:07", ipv6=True)])
    assert NFT == [firewall_script(lm.links.values())]
    text = NFT[0]
    assert 'oifname "vrrp.7" ip protocol igmp dup to ip daddr device "eth0" drop' in text
    assert 'oifname "vrrp6.7" icmpv6 type mld2-listener-report dup to ip6 daddr device "eth0" drop' in text
    assert 'oifname "vrrp6.7" icmpv6 type nd-router-solicit drop' in text
    assert 'oifname "vrrp.7" icmpv6' not in text  # IPv6 is off on an IPv4 VMAC
    lm.ensure([LINK])
    assert len(NFT) == 1  # nothing changed: not rewritten
    lm.remove().result()
    assert NFT[-1] == ("table ip chimeha_vmac\ndelete table ip chimeha_vmac\n"
                       "table ip6 chimeha_vmac\ndelete table ip6 chimeha_vmac\n")
