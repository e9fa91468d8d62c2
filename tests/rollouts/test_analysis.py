"""The analysis' rules on given figures: too few requests hold the step, the error rate is
judged on the step's own counts (early once no success to come could save it), latency and
cost against the stable model's, with small latencies not compared."""

from decimal import Decimal

import pytest

from modelhub.providers.base import ModelSpec, ProviderSpec
from modelhub.rollouts import ADVANCE, HOLD, ROLLBACK, Counts, counts_verdict, figures_verdict
from modelhub.routing.snapshot import RolloutSpec
from modelhub.stats import NO_REQUESTS, ModelStats

PROVIDER = ProviderSpec("p", kind="openai", base_url=None, api_key_env="K", api_key="k", timeout=5)


def model_spec(pk: int, model_id: str) -> ModelSpec:
    return ModelSpec(pk, model_id, model_id, PROVIDER, 128_000, 4096, Decimal(3), Decimal(15))


def spec(**fields) -> RolloutSpec:
    model, stable = model_spec(1, "cand"), model_spec(2, "stable")
    values = dict(
        pk=1,
        route="pam",
        candidate=model,
        stable=stable,
        phase="canary",
        step=2,
        weight=10.0,
        last_step=False,
        shadow_percent=10.0,
        shadow_open=False,
        min_requests=50,
        max_error_rate=0.05,
        max_latency_ratio=1.5,
        max_cost_ratio=1.5,
        counts="1:canary2:0",
    )
    return RolloutSpec(**{**values, **fields})


def stats(requests=100, p95=800.0, cost="0.001") -> ModelStats:
    return ModelStats(requests, requests, 1.0, p95 / 2, p95, None, Decimal(cost))


@pytest.mark.parametrize(
    "requests,failures,action",
    [
        (0, 0, HOLD),
        (49, 2, HOLD),  # 2 of at least 50: within 5%
        (10, 3, ROLLBACK),  # 3 failures are more than 5% of the 50 the step needs, whatever follows
        (50, 2, None),  # judged on: the statistics decide
        (50, 3, ROLLBACK),
        (200, 10, None),
        (200, 11, ROLLBACK),
    ],
)
def test_the_step_holds_until_min_requests_and_fails_on_its_error_rate(requests, failures, action):
    verdict = counts_verdict(spec(), Counts(requests, failures))

    assert (verdict.action if verdict else None) == action
    if verdict is not None:
        assert verdict.judged == ("canary", 2)
        assert str(requests) in verdict.reason and "step 3 (10%)" in verdict.reason


def test_a_shadow_phase_whose_budget_is_spent_says_so_while_it_holds():
    verdict = counts_verdict(spec(phase="shadow", step=0, shadow_open=False), Counts(3, 0))
    assert verdict.action == HOLD and "shadow copies" in verdict.reason and "budget is spent" in verdict.reason


@pytest.mark.parametrize(
    "candidate,stable,action,check",
    [
        (stats(requests=10), stats(), HOLD, ""),  # the window holds too few of its requests
        (NO_REQUESTS, stats(), HOLD, ""),
        (stats(p95=1300), stats(p95=1000), ADVANCE, ""),
        (stats(p95=1600), stats(p95=1000), ROLLBACK, "latency"),
        (stats(p95=40), stats(p95=2), ADVANCE, ""),  # both under the 50 ms floor: not compared
        (stats(p95=90), stats(p95=2), ROLLBACK, "latency"),  # 90 against the floor: 1.8x
        (stats(cost="0.0016"), stats(cost="0.001"), ROLLBACK, "cost"),
        (stats(cost="0.0015"), stats(cost="0.001"), ADVANCE, ""),
        (stats(cost="0.01"), stats(cost="0"), ADVANCE, ""),  # a free stable model: cost not compared
        (stats(), NO_REQUESTS, ADVANCE, ""),  # nothing to compare with: passed on errors alone
    ],
)
def test_latency_and_cost_are_judged_against_the_stable_model(candidate, stable, action, check):
    verdict = figures_verdict(spec(), candidate, stable)
    assert (verdict.action, verdict.check) == (action, check)
