"""`chime-ha verify`: the seed's verification section against deployed nodes, over SSH."""
