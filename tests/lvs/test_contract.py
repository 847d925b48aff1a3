"""The backend contract and the declarations every list derives from (pure, no root)."""

from __future__ import annotations

import inspect

import pytest

from chimeha.check import catalog as check_catalog
from chimeha.check.dispatch import _PROBES
from chimeha.config import loads
from chimeha.config.build_lvs import _CHECKERS, LB_ALGOS
from chimeha.config.keywords import CHECKER_KEYWORDS as CHECKER_SPECIFIC
from chimeha.lvs import catalog
from chimeha.lvs.backends import base, registry
from chimeha.lvs.backends.nft import NFT_ALGOS, NftBackend
from chimeha.lvs.backends.select import choose
from chimeha.lvs.desired import desired_state, scheduler_flags
from chimeha.lvs.schedulers import _CLASSES


def test_every_scheduler_list_is_the_declaration():
    assert LB_ALGOS == catalog.ALGORITHMS
    assert set(_CLASSES) == set(catalog.ALGORITHMS)  # one pure implementation per declared name
    assert NFT_ALGOS == ("rr", "wrr", "sh", "mh", "dh", "fo")
    assert catalog.CONNECTION_AWARE == {"lc", "wlc", "lblc", "ovf", "lblcr", "sed", "nq", "twos"}
    assert all(not s.connection_aware or "nft" not in s.exact_on for s in catalog.SCHEDULERS)


def test_nft_declines_exactly_what_the_catalog_says():
    from chimeha.lvs.types import Destination, Service, ServiceKey
    nft = NftBackend()
    for decl in catalog.SCHEDULERS:
        svc = Service(ServiceKey("TCP", "10.0.0.1", 80), decl.name, destinations=(Destination("10.0.0.2", 80),))
        assert (nft.unsupported(svc) is None) == ("nft" in decl.exact_on), decl.name


def test_every_forwarding_dataplane_has_a_factory_with_the_whole_protocol():
    assert registry.FORWARDING == catalog.ORDER == ("ipvs", "nft", "proxy")
    assert set(registry.FACTORIES) == set(catalog.ORDER)
    wanted = {n for n, _ in inspect.getmembers(base.Backend, inspect.isfunction)}
    assert wanted >= {"unsupported", "preflight", "read_actual", "apply", "verify", "close", "stats"}
    import logging
    for name in catalog.ORDER:
        b = registry.make_backend(name, registry.BackendOptions(logging.getLogger("t")))
        assert b.name == name
        for meth in wanted:
            assert callable(getattr(b, meth)), (name, meth)
        for meth in ("preflight", "read_actual", "apply", "verify", "close"):
            assert inspect.iscoroutinefunction(getattr(b, meth)), (name, meth)
    with pytest.raises(KeyError, match="known: ipvs, nft, proxy"):
        registry.make_backend("lvs", registry.BackendOptions(logging.getLogger("t")))


def test_every_checker_list_is_the_declaration():
    assert set(check_catalog.KINDS) == set(_CHECKERS) == set(CHECKER_SPECIFIC)
    assert set(_PROBES) == check_catalog.IMPLEMENTED == set(check_catalog.KINDS)


CONF = """virtual_server 10.0.0.1 80 {{
  lb_algo {algo}
  protocol TCP
{flags}
  real_server 10.0.0.2 80 {{
  }}
}}
"""


@pytest.mark.parametrize("algo,flags,want", [
    ("sh", "sh-port\n  sh-fallback", ("fallback", "port")),
    ("mh", "mh-fallback", ("fallback",)),
    ("mh", "flag-2", ("port",)),
    ("sh", "flag-1\n  flag-2", ("fallback", "port")),
    ("sh", "mh-port", ()),           # the other scheduler's flag: no effect, and said so
    ("rr", "sh-port\n  flag-1", ()),  # rr takes no flags
])
def test_scheduler_flags_are_typed_fields(algo, flags, want):
    res = loads(CONF.format(algo=algo, flags=flags))
    vs = res.config.virtual_servers[0]
    assert scheduler_flags(vs) == want
    assert desired_state(res.config, None).services[next(iter(desired_state(res.config, None).services))].flags == want
    no_effect = [d for d in res.diagnostics if d.code == "scheduler-flag-unused"]
    assert bool(no_effect) == (not want), res.diagnostics
    for d in no_effect:
        assert d.line in (4, 5) and "has no effect" in d.message


def test_flag_3_is_not_implemented_with_its_line():
    res = loads(CONF.format(algo="sh", flags="flag-3"))
    assert res.config.virtual_servers[0].flag_3
    [d] = [d for d in res.diagnostics if d.code == "not-implemented"]
    assert d.line == 4 and "flag-3" in d.message


def test_file_check_dynamic_is_a_field():
    conf = ("track_file tf {\n  file /tmp/none\n}\nvirtual_server 10.0.0.1 80 {\n  protocol TCP\n"
            "  real_server 10.0.0.2 80 {\n    FILE_CHECK {\n      track_file tf\n      dynamic\n    }\n"
            "    FILE_CHECK {\n      track_file tf\n    }\n  }\n}\n")
    cfg = loads(conf).config
    a, b = cfg.virtual_servers[0].real_servers[0].checkers
    assert (a.dynamic, b.dynamic) == (True, False)
    assert "dynamic" not in a.options


def test_dataplane_none_says_why_nothing_is_forwarded():
    cfg = loads(CONF.format(algo="rr", flags="")).config
    svcs = list(desired_state(cfg, None).services.values())
    c = choose(svcs, "none", {})
    assert c.backend == {}
    assert c.reasons[svcs[0].key] == "TCP 10.0.0.1:80: not forwarded (--dataplane none: health checks and status only)"
