"""The catalog a new install starts with, and that seeding never overwrites operators' edits."""

from decimal import Decimal

import pytest

from modelhub.catalog import catalog_seed
from modelhub.models import AIModel, Provider, Route, RouteEntry

pytestmark = pytest.mark.django_db

SEEDED_CHAINS = {
    "pam": ["claude-sonnet-4-5-20250929", "claude-3-5-haiku-20241022", "gemini-1.5-flash-latest", "gpt-4o-mini"],
    "fast": ["llama-3.1-8b-instant"],
    "reasoning": ["llama-3.3-70b-versatile", "llama-3.1-70b-versatile", "llama-3.1-8b-instant"],
    "summarization": ["llama-3.1-8b-instant", "mixtral-8x7b-32768"],
    "fallback": ["llama-3.1-8b-instant"],
    "pass_05": ["gemini-2.5-flash"],
    "pass_1": ["gpt-5"],
}


def _seed():
    catalog_seed(Provider=Provider, AIModel=AIModel, Route=Route, RouteEntry=RouteEntry)


def _chain(name):
    return list(
        RouteEntry.objects.filter(route__name=name).order_by("position").values_list("model__model_id", flat=True)
    )


def test_migrations_seed_the_routes_of_the_source_documents():
    assert {name: _chain(name) for name in SEEDED_CHAINS} == SEEDED_CHAINS


@pytest.mark.parametrize(
    "model_id, price_in, price_out, temperature, param",
    [
        ("claude-haiku-4-5-20250514", "1", "5", True, "max_tokens"),
        ("claude-opus-4-20250514", "15", "75", True, "max_tokens"),
        ("gemini-1.5-flash-latest", "0.075", "0.30", True, "maxOutputTokens"),
        ("gemini-2.5-flash-lite", "0.10", "0.40", True, "maxOutputTokens"),
        ("gpt-5-nano", "0.05", "0.40", False, "max_completion_tokens"),
        ("gpt-4o", "2.5", "10", True, "max_tokens"),
    ],
)
def test_seeded_models_carry_the_documented_prices_and_parameters(model_id, price_in, price_out, temperature, param):
    model = AIModel.objects.get(model_id=model_id)
    assert (model.input_price_per_mtok, model.output_price_per_mtok) == (Decimal(price_in), Decimal(price_out))
    assert (model.supports_temperature, model.max_tokens_param) == (temperature, param)


def test_first_party_providers_keep_a_blank_base_url():
    blank = Provider.objects.filter(name__in=["anthropic", "openai", "google"], base_url="")
    assert blank.count() == 3


def test_seeding_again_never_overwrites_an_operators_edits():
    model = AIModel.objects.get(model_id="gpt-4o-mini")
    model.input_price_per_mtok, model.enabled = Decimal("9"), False
    model.save()
    RouteEntry.objects.filter(route__name="pam", position=0).delete()
    _seed()
    model.refresh_from_db()
    assert (model.input_price_per_mtok, model.enabled) == (Decimal("9"), False)
    assert _chain("pam") == SEEDED_CHAINS["pam"][1:]


def test_seeding_adds_what_is_missing():
    AIModel.objects.filter(model_id="gpt-5-mini").delete()
    _seed()
    assert AIModel.objects.filter(model_id="gpt-5-mini").exists()
