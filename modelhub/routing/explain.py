"""The routing explanation: for one request, what was considered and why. The override
in force, the strategy and the classifier's verdict, the canary arm, each model passed
over with its reason, the order walked, and each attempt. In the native answer
(``routing``), behind ``x-modelhub-explain: 1`` on ``/v1`` (``x-modelhub-routing``), in
the ledger (compact: ``router.routing_compact``), on the playground and in admin."""

from __future__ import annotations

from .router import Failover, skipped_models


def routing_explained(failover: Failover, *, attempts: bool = False) -> dict:
    """The explanation of ``failover``'s request (with its attempts when ``attempts``)."""
    choice = failover.choice
    data: dict = {
        "route": failover.ledger_route or None,
        "chain_route": failover.route.name,
        "override": failover.route.override,
        "strategy": choice.strategy if choice is not None else "priority",
        "arm": choice.arm if choice is not None else "stable",
        "order": [model.model_id for model in failover.route.full_chain],
        "skipped": [{"model": model.model_id, "reason": reason} for model, reason in skipped_models(failover)],
    }
    classification = choice.classification if choice is not None else None
    if classification is not None:
        data.update(
            tier=classification.tier,
            category=classification.category,
            score=classification.score,
            signals=list(classification.signals),
        )
    if choice is not None and choice.rollout is not None:
        data["rollout"] = choice.rollout
    if attempts:
        data["attempts"] = [attempt.as_dict() for attempt in failover.attempts]
    return data
