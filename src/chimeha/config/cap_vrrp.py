"""Capability declarations: VRRP instances, sync groups, tracked objects, BFD.

Data only (see ``capabilities``).  To record that chime-ha now acts on a
keyword, change its entry to ``ok(...)``: one line.
"""

from __future__ import annotations

from .capabilities_base import BUFS, noeff, ok, todo


ENTRIES = {
    # ------------------------------------------------------------------ vrrp_instance
    "vrrp_instance state": ok(field="VrrpInstance.state"),
    "vrrp_instance interface": ok(field="VrrpInstance.interface"),
    "vrrp_instance virtual_router_id": ok(field="VrrpInstance.virtual_router_id"),
    "vrrp_instance priority": ok(field="VrrpInstance.priority"),
    "vrrp_instance advert_int": ok(field="VrrpInstance.advert_int"),
    "vrrp_instance version": ok(field="VrrpInstance.version"),
    "vrrp_instance native_ipv6": ok(),  # decides VrrpInstance.family
    "vrrp_instance nopreempt": ok(field="VrrpInstance.nopreempt"),
    "vrrp_instance preempt": ok(),
    "vrrp_instance preempt_delay": ok(field="VrrpInstance.preempt_delay"),
    "vrrp_instance authentication": ok(),
    "vrrp_instance authentication auth_type": ok(field="VrrpInstance.auth_type"),
    "vrrp_instance authentication auth_pass": ok(field="VrrpInstance.auth_pass"),
    "vrrp_instance virtual_ipaddress": ok(field="VrrpInstance.virtual_ipaddresses"),
    "vrrp_instance virtual_ipaddress_excluded": ok(field="VrrpInstance.virtual_ipaddresses_excluded"),
    "vrrp_instance virtual_routes": ok(field="VrrpInstance.virtual_routes"),
    "vrrp_instance virtual_rules": ok(field="VrrpInstance.virtual_rules"),
    "vrrp_instance track_script": ok(field="VrrpInstance.track_scripts"),
    "vrrp_instance track_interface": ok(field="VrrpInstance.track_interfaces"),
    "vrrp_instance track_file": ok(field="VrrpInstance.track_files"),
    "vrrp_instance track_process": ok(field="VrrpInstance.track_processes"),
    "vrrp_instance track_bfd": ok(field="VrrpInstance.track_bfds"),
    "vrrp_instance dont_track_primary": ok(field="VrrpInstance.dont_track_primary"),
    "vrrp_instance unicast_src_ip": ok(field="VrrpInstance.unicast_src_ip"),
    "vrrp_instance unicast_peer": ok(field="VrrpInstance.unicast_peers"),
    "vrrp_instance unicast_ttl": ok(field="VrrpInstance.unicast_ttl"),
    "vrrp_instance unicast_fault_no_peer": ok(field="VrrpInstance.unicast_fault_no_peer"),
    "vrrp_instance check_unicast_src": ok(field="VrrpInstance.check_unicast_src"),
    "vrrp_instance old_unicast_checksum": todo("the pre-1.3.6 unicast checksum is not produced"),
    "vrrp_instance mcast_src_ip": ok(field="VrrpInstance.mcast_src_ip"),
    "vrrp_instance mcast_dst_ip": ok(field="VrrpInstance.mcast_dst_ip"),
    "vrrp_instance track_src_ip": todo("a change of the source address is not tracked"),
    "vrrp_instance garp_master_delay": ok(field="VrrpInstance.garp_master_delay"),
    "vrrp_instance garp_master_repeat": ok(field="VrrpInstance.garp_master_repeat"),
    "vrrp_instance garp_master_refresh": ok(field="VrrpInstance.garp_master_refresh"),
    "vrrp_instance garp_master_refresh_repeat": ok(field="VrrpInstance.garp_master_refresh_repeat"),
    "vrrp_instance garp_lower_prio_delay": ok(field="VrrpInstance.garp_lower_prio_delay"),
    "vrrp_instance garp_lower_prio_repeat": ok(field="VrrpInstance.garp_lower_prio_repeat"),
    "vrrp_instance garp_extra_if": ok(field="VrrpInstance.garp_extra_if"),
    "vrrp_instance vmac_garp_intvl": ok(field="VrrpInstance.garp_extra_if"),  # its deprecated name
    "vrrp_instance higher_prio_send_advert": ok(field="VrrpInstance.higher_prio_send_advert"),
    "vrrp_instance lower_prio_no_advert": ok(field="VrrpInstance.lower_prio_no_advert"),
    "vrrp_instance down_timer_adverts": ok(field="VrrpInstance.down_timer_adverts"),
    "vrrp_instance skip_check_adv_addr": ok(field="VrrpInstance.skip_check_adv_addr"),
    "vrrp_instance strict_mode": ok(field="VrrpInstance.strict_mode"),
    # accept mode (config/strict.py accept_of): without it the VIPs' traffic is dropped by nftables while held
    "vrrp_instance accept": ok(field="VrrpInstance.accept"),
    "vrrp_instance no_accept": ok(field="VrrpInstance.accept"),
    "vrrp_instance promote_secondaries": todo("promote_secondaries is not set on the interface"),
    "vrrp_instance use_vmac": ok(field="VrrpInstance.vmac"),
    "vrrp_instance use_vmac_addr": ok(),  # VrrpInstance.use_vmac_addr decides VrrpInstance.vip_vmacs
    "vrrp_instance vmac_xmit_base": ok(field="VrrpInstance.vmac_xmit_base"),
    "vrrp_instance use_ipvlan": todo("the L2 ipvlan is requested as keepalived requests it but was never seen "
                                     "working: this machine's kernel has no ipvlan (netlink answers 'Operation "
                                     "not supported')", field="VrrpInstance.vmac"),
    "vrrp_instance vrf": todo("VRF interfaces are not handled"),
    "vrrp_instance linkbeat_use_polling": noeff("chime-ha learns link state from netlink events, never by polling"),
    "vrrp_instance kernel_rx_buf_size": noeff(BUFS),
    "vrrp_instance debug": noeff("keepalived's per-instance debug level; chime-ha logs by its --log-level"),
    "vrrp_instance notify_master": ok(field="VrrpInstance.notify_master"),
    "vrrp_instance notify_backup": ok(field="VrrpInstance.notify_backup"),
    "vrrp_instance notify_fault": ok(field="VrrpInstance.notify_fault"),
    "vrrp_instance notify_stop": ok(field="VrrpInstance.notify_stop"),
    "vrrp_instance notify": ok(field="VrrpInstance.notify"),
    "vrrp_instance notify_deleted": ok(field="VrrpInstance.notify_deleted"),
    "vrrp_instance notify_master_rx_lower_pri": ok(field="VrrpInstance.notify_master_rx_lower_pri"),
    "vrrp_instance notify_priority_changes": ok(field="VrrpInstance.notify_priority_changes"),
    "vrrp_instance smtp_alert": ok(field="VrrpInstance.smtp_alert"),
    "vrrp_instance lvs_sync_daemon_interface": todo("the IPVS connection sync daemon is not started",
                                                    field="VrrpInstance.lvs_sync_daemon_interface"),
    # ------------------------------------------------------------------ vrrp_sync_group
    "vrrp_sync_group group": ok(field="SyncGroup.group"),
    "vrrp_sync_group notify_master": ok(field="SyncGroup.notify_master"),
    "vrrp_sync_group notify_backup": ok(field="SyncGroup.notify_backup"),
    "vrrp_sync_group notify_fault": ok(field="SyncGroup.notify_fault"),
    "vrrp_sync_group notify_stop": ok(field="SyncGroup.notify_stop"),
    "vrrp_sync_group notify": ok(field="SyncGroup.notify"),
    "vrrp_sync_group notify_priority_changes": ok(field="SyncGroup.notify_priority_changes"),
    "vrrp_sync_group smtp_alert": ok(field="SyncGroup.smtp_alert"),
    # Group trackers apply to every member; without sync_group_tracking_weight a member's own
    # weighted trackers are dropped or unweighted (keepalived 2.2.7; vrrp/sync_group.py member_tracks).
    "vrrp_sync_group global_tracking": ok(field="SyncGroup.global_tracking"),
    "vrrp_sync_group sync_group_tracking_weight": ok(field="SyncGroup.sync_group_tracking_weight"),
    "vrrp_sync_group track_script": ok(field="SyncGroup.track_scripts"),
    "vrrp_sync_group track_interface": ok(field="SyncGroup.track_interfaces"),
    "vrrp_sync_group track_file": ok(field="SyncGroup.track_files"),
    "vrrp_sync_group track_process": ok(field="SyncGroup.track_processes"),
    "vrrp_sync_group track_bfd": ok(),
    # ------------------------------------------------------------------ vrrp_script
    "vrrp_script script": ok(field="VrrpScript.script"),
    "vrrp_script interval": ok(field="VrrpScript.interval"),
    "vrrp_script timeout": ok(field="VrrpScript.timeout"),
    "vrrp_script weight": ok(field="VrrpScript.weight"),
    "vrrp_script rise": ok(field="VrrpScript.rise"),
    "vrrp_script fall": ok(field="VrrpScript.fall"),
    "vrrp_script user": ok(field="VrrpScript.user"),
    "vrrp_script init_fail": ok(field="VrrpScript.init_fail"),
    # ------------------------------------------------------------------ vrrp_track_process
    "vrrp_track_process process": ok(field="TrackProcess.process"),
    "vrrp_track_process param_match": ok(field="TrackProcess.param_match"),
    "vrrp_track_process weight": ok(field="TrackProcess.weight"),
    "vrrp_track_process quorum": ok(field="TrackProcess.quorum"),
    "vrrp_track_process quorum_max": ok(field="TrackProcess.quorum_max"),
    "vrrp_track_process full_command": ok(field="TrackProcess.full_command"),
    "vrrp_track_process delay": ok(field="TrackProcess.delay"),
    "vrrp_track_process fork_delay": ok(field="TrackProcess.fork_delay"),
    "vrrp_track_process terminate_delay": ok(field="TrackProcess.terminate_delay"),
    # ------------------------------------------------------------------ track_file / vrrp_track_file
    "track_file file": ok(field="TrackFile.file"),
    "track_file weight": ok(field="TrackFile.weight"),
    "track_file init_file": ok(field="TrackFile.init_file"),
    "vrrp_track_file file": ok(),
    "vrrp_track_file weight": ok(),
    "vrrp_track_file init_file": ok(),
    # ------------------------------------------------------------------ generic blocks
    "track_group group": todo("track_group blocks are kept as text; nothing uses them"),
    "garp_group garp_interval": ok(),  # read from Config.blocks by vrrp.from_config.garp_intervals
    "garp_group gna_interval": ok(),
    "garp_group interface": ok(),
    "garp_group interfaces": ok(),
    **{f"bfd_instance {kw}": ok() for kw in (
        "source_ip", "neighbor_ip", "neighbour_ip", "min_rx", "min_tx", "idle_tx", "multiplier", "passive",
        "ttl", "hoplimit", "max_hops", "weight")},
    **{f"bfd_instance {kw}": noeff("chime-ha is one process: every BFD session is seen by VRRP and the checkers "
                                   "alike") for kw in ("vrrp", "checker")},
}

# Option words inside a line of virtual_ipaddress / virtual_ipaddress_excluded (not keyword paths).
VIP_OPTIONS = {
    **{w: ok() for w in ("dev", "brd", "broadcast", "scope", "label", "peer", "nodad", "-nodad")},
    "no_track": noeff("chime-ha does not react to a VIP removed behind its back, so every VIP behaves as no_track",
                      field="VirtualAddress.no_track"),
    "home": todo("the address is added without the home-address flag", field="VirtualAddress.home"),
    "noprefixroute": todo("the address is added with its prefix route", field="VirtualAddress.noprefixroute"),
    "autojoin": todo("the address is added without the autojoin flag"),
    "dadfailed": todo("the dadfailed flag is not set"),
    "use_vmac": ok(),  # VirtualAddress.use_vmac decides VrrpInstance.vip_vmacs
}

# Option words inside a line of virtual_routes; the others that 2.2.7 knows are not applied.
ROUTE_ACTS = frozenset({"src", "metric", "table", "scope", "via", "gw", "dev", "to", "blackhole", "unreachable",
                        "prohibit", "throw", "protocol"})
ROUTE_NO_TRACK = noeff("chime-ha does not react to a route removed behind its back, so every route behaves as "
                       "no_track")
