"""A small hub wired to the simulated upstream, for tests that go through the router."""

from __future__ import annotations

from decimal import Decimal

import orjson

from modelhub.models import AIModel, Provider, Route, RouteEntry
from modelhub.runtime import runtime
from modelhub.services import api_key_create

KEY_ENV = "SIM_TEST_KEY"
KINDS = ("anthropic", "openai", "google", "openai_compatible")


class Hub:
    def __init__(self, simulator, client):
        self.simulator, self.client = simulator, client
        self.providers = {
            kind: Provider.objects.create(
                name=f"sim-{kind.replace('_', '-')}",
                kind=kind,
                base_url=simulator.base_url(kind),
                api_key_env=KEY_ENV,
                timeout_seconds=5,
            )
            for kind in KINDS
        }
        self.key_obj, self.key = api_key_create(name="tests")

    def model(self, model_id, kind="openai", **fields) -> AIModel:
        fields = {
            "input_price_per_mtok": Decimal("3"),
            "output_price_per_mtok": Decimal("15"),
            "max_tokens_param": "maxOutputTokens" if kind == "google" else "max_tokens",
            **fields,
        }
        return AIModel.objects.create(provider=self.providers[kind], model_id=model_id, **fields)

    def route(self, name, models) -> Route:
        Route.objects.filter(name=name).delete()  # the seeded catalog has "pam"
        route = Route.objects.create(name=name)
        for position, model in enumerate(models):
            RouteEntry.objects.create(route=route, model=model, position=position)
        return route

    def chat(self, body=None, *, key=None, raw=None, **extra):
        data = raw if raw is not None else orjson.dumps(body if body is not None else {"message": "Hi"})
        headers = {} if key is False else {"Authorization": f"Bearer {key or self.key}"}
        response = self.client.post(
            "/api/v1/pam/chat", data=data, content_type="application/json", headers=headers, **extra
        )
        runtime().ledger.flush()
        return response
