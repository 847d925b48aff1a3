import json
import os

import pytest

from chimeha.observe.dumps import DumpPaths, render_data, render_json, render_stats, write_dump
from chimeha.observe.schema import normalize

from observe_fakes import sample_snapshot

# The stats keys keepalived 2.2.7 writes in /tmp/keepalived.json (measured on this machine).
KEEPALIVED_STATS_KEYS = {"advert_rcvd", "advert_sent", "become_master", "release_master", "packet_len_err",
                         "advert_interval_err", "ip_ttl_err", "invalid_type_rcvd", "addr_list_err",
                         "invalid_authtype", "authtype_mismatch", "auth_failure", "pri_zero_rcvd", "pri_zero_sent"}


def test_stats_file_has_keepalived_grouping_and_classified_drops():
    text = render_stats(normalize(sample_snapshot()))
    block = text.split("VRRP Instance: VI_2")[0]
    assert block.splitlines()[:6] == ["VRRP Instance: VI_1", "  Advertisements:", "    Received: 3",
                                      "    Sent: 812", "  Became master: 2", "  Released master: 1"]
    errors = block.split("  Packet Errors:\n")[1].split("  Authentication Errors:\n")
    assert errors[0].splitlines() == ["    Length: 6", "    TTL: 1", "    Invalid Type: 0",
                                      "    Advertisement Interval: 5", "    Address List: 0"]
    auth = errors[1].split("  Priority Zero:\n")
    assert auth[0].splitlines() == ["    Invalid Type: 0", "    Type Mismatch: 0", "    Failure: 4"]
    assert auth[1].splitlines()[:2] == ["    Received: 1", "    Sent: 0"]
    # checksum has no keepalived line: it is listed, not lost.
    assert "  Other Drops:\n    checksum: 2\n" in block
    assert "Unmatched VRRP packets:\n  vrid-unknown: 7\n" in text


def test_data_dump_names_state_master_reason_and_servers():
    text = render_data(normalize(sample_snapshot()))
    assert text.startswith("------< Global definitions >------\n Router ID = server1\n")
    vi1 = text.split(" VRRP Instance = VI_1\n")[1].split(" VRRP Instance = VI_2")[0]
    assert "   State = MASTER\n" in vi1
    assert "   Effective priority = 255\n" in vi1
    assert "   Last transition reason = BACKUP -> MASTER: higher priority 255 than master 192.168.231.12 (254)\n" in vi1
    assert "     192.168.231.10/32 dev ens160 set\n" in vi1
    assert "   Last failover = 0.992 sec\n" in vi1
    vi2 = text.split(" VRRP Instance = VI_2\n")[1]
    assert "     192.168.231.20/32 dev ens160 not set\n" in vi2
    assert " VRRP Script = chk_server\n" in text and "   Status = GOOD\n" in text
    assert "   RS = 192.168.231.12:8801\n     Weight = 0\n     Alive = no\n" in text
    assert "   Data plane = nft\n" in text


def test_json_dump_uses_keepalived_keys():
    dump = json.loads(render_json(normalize(sample_snapshot())))
    assert [d["data"]["iname"] for d in dump] == ["VI_1", "VI_2"]
    assert KEEPALIVED_STATS_KEYS <= set(dump[0]["stats"])
    assert dump[0]["data"]["state"] == 2 and dump[1]["data"]["state"] == 1  # keepalived's numbering
    assert dump[0]["stats"]["auth_failure"] == 4 and dump[0]["stats"]["ip_ttl_err"] == 1
    assert dump[0]["data"]["vipset"] is True and dump[0]["data"]["vrid"] == 51


def test_write_is_atomic_private_and_replaces_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "k.stats").symlink_to(victim)
    paths = DumpPaths(str(tmp_path / "k.data"), str(tmp_path / "k.stats"), str(tmp_path / "k.json"))
    path = write_dump("stats", normalize(sample_snapshot()), paths)
    assert path == str(tmp_path / "k.stats")
    assert victim.read_text() == "keep me"
    assert not os.path.islink(path) and os.stat(path).st_mode & 0o777 == 0o600
    assert open(path).read().startswith("VRRP Instance: VI_1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.stats", "victim"]  # no temp files left


def test_unknown_kind_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown dump kind 'bogus'"):
        write_dump("bogus", normalize({}), DumpPaths(str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")))
