from waka.agent._ratelimit import LineBudget


def test_a_burst_passes_then_the_sustained_rate_applies():
    budget = LineBudget(rate=100, burst=300)
    assert budget.take(250, now=0.0) == 250
    assert budget.take(100, now=0.0) == 50
    assert budget.take(100, now=0.5) == 50  # half a second refills 50
    assert budget.take(1000, now=10.0) == 300  # never more than the burst


def test_a_quiet_dyno_is_never_limited():
    budget = LineBudget(rate=100, burst=300)
    assert all(budget.take(10, now=t * 0.1) == 10 for t in range(100))
