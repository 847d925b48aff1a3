"""SNMP: an AgentX subagent serving the VRRP MIBs (RFC 2787, RFC 6527) and keepalived's MIB basics."""
