"""BGP announcements of service VIPs through an existing speaker (FRR bgpd).

Pure parts: :mod:`.model` (the typed ``chimeha_bgp`` block), :mod:`.policy`
(health -> desired announcements), :mod:`.frr` (bgpd configuration and the
vtysh commands that turn the speaker's RIB into the desired one). The process
that drives the speaker is :mod:`chimeha.runtime.bgp`.
"""
