"""chime-ha: a keepalived-compatible high-availability daemon.

Layout (see README.md): ``config`` reads keepalived.conf, ``vrrp``/``track``/``sim``
are the pure sans-I/O core, ``net``/``runtime``/``check``/``lvs.backends`` are the
thin adapters that touch the system, ``observe`` answers "what is it doing and why",
``lab`` rehearses the seed document in network namespaces.
"""

__version__ = "0.1.0"
