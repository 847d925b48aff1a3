from chimeha.sim import scenario


def test_every_accepted_event_action_has_a_handler():
    # parse_event accepts ACTIONS; _schedule must know how to run each of them,
    # or a valid --event would crash the simulator.
    handled = set(scenario._NODE_EVENTS) | {"check-fail", "check-ok", "track-down", "track-up"}
    assert set(scenario.ACTIONS) == handled
