import pytest

from waka.agent._backoff import CrashPolicy


def crash_delays(crash_times, run_for=1.0):
    """Feeds a policy crashes that each ran `run_for` seconds; returns the delays it chose."""
    policy = CrashPolicy()
    return [policy.on_exit(t, t + run_for) for t in crash_times]


def test_first_crash_restarts_immediately_then_cool_offs_double():
    delays = crash_delays(range(0, 10_000, 1000))
    assert delays == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1200.0, 1200.0]


def test_cool_off_never_exceeds_twenty_minutes():
    delays = crash_delays(range(0, 100_000, 1000))
    assert max(delays) == 20 * 60
    assert delays[-1] == 20 * 60


def test_a_good_start_resets_the_schedule():
    policy = CrashPolicy(stable_after=60)
    assert policy.on_exit(0, 1) == 0.0
    assert policy.on_exit(10, 11) == 10.0
    assert policy.on_exit(100, 120) == 20.0
    # Up for a minute: that start was good, so this crash counts as the first again.
    assert policy.on_exit(200, 260) == 0.0
    assert policy.on_exit(300, 301) == 10.0


@pytest.mark.parametrize("ran_for", [59.9, 0.0])
def test_short_runs_do_not_reset(ran_for):
    policy = CrashPolicy(stable_after=60)
    policy.on_exit(0, 0)
    assert policy.on_exit(10, 10 + ran_for) == 10.0
