"""A request's worst case counts every input the providers bill: images (at the most the
model's provider bills for one), the tools offered, the tool calls and results of earlier
turns and the response format's schema, besides the text; so the hold covers what the
request can cost, and concurrent requests with images stay within one worst case of the
budget."""

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db.models import Sum

from modelhub.chat import worst_cost
from modelhub.models import UsageRecord
from modelhub.providers.base import (
    ChatRequest,
    Image,
    Message,
    ModelSpec,
    ProviderSpec,
    ResponseFormat,
    Tool,
    ToolCall,
)
from modelhub.routing.capabilities import needs_of
from modelhub.routing.router import cost_of
from modelhub.routing.snapshot import RouteSpec
from modelhub.runtime import runtime
from tests.hubserver import hub_server, live  # noqa: F401 - fixtures
from tests.test_budgets import chat_post

MILLION = Decimal(1_000_000)
IMAGE = Image("data:image/png;base64,AAAA", "image/png", "AAAA")
SCHEMA = {"type": "object", "properties": {f"f{i}": {"type": "string", "description": "x" * 200} for i in range(40)}}


def _model(kind="openai", pk=1, input_price="3", output_price="15", max_output=16) -> ModelSpec:
    provider = ProviderSpec(f"p-{kind}", kind, None, "KEY", "x", 30)
    return ModelSpec(pk, f"m{pk}", f"m{pk}", provider, 200_000, max_output, Decimal(input_price), Decimal(output_price))


def _route(*models: ModelSpec) -> RouteSpec:
    return RouteSpec(name="r", enabled=True, chain=models)


def _input_tokens(route: RouteSpec, request: ChatRequest) -> Decimal:
    """The input tokens the worst case of a one-model route counts (16 output tokens at $15/M)."""
    (model,) = route.chain
    return (
        (worst_cost(route, request) - 16 * model.output_price_per_mtok / MILLION) * MILLION / model.input_price_per_mtok
    )


def test_the_worst_case_counts_images_tools_tool_calls_and_the_response_format():
    """The reviewer's request: 10 images, a 20,000-character tool call, a large tool schema;
    counting only the message text, its hold was $0.00029 where it can cost ~$1.5."""
    route = _route(_model())
    text = ChatRequest(messages=(Message("user", "Hi"),), max_tokens=16)
    base = _input_tokens(route, text)

    images = ChatRequest(messages=(Message("user", "Hi", images=(IMAGE,) * 10),), max_tokens=16)
    assert _input_tokens(route, images) - base == 10 * 48_169  # the most OpenAI bills for an image

    tool = Tool("lookup", "d" * 2000, SCHEMA)
    tools = ChatRequest(messages=text.messages, tools=(tool,), max_tokens=16)
    assert _input_tokens(route, tools) - base >= 2000 + len(json.dumps(SCHEMA, separators=(",", ":")))

    arguments = '{"q": "' + "y" * 20_000 + '"}'
    called = ChatRequest(
        messages=(
            Message("user", "Hi"),
            Message("assistant", "", tool_calls=(ToolCall("c1", "lookup", arguments),)),
            Message("tool", "ok", tool_call_id="c1", name="lookup"),
        ),
        max_tokens=16,
    )
    assert _input_tokens(route, called) - base >= len(arguments) + len("ok")

    formatted = ChatRequest(
        messages=text.messages, response_format=ResponseFormat("json_schema", SCHEMA), max_tokens=16
    )
    assert _input_tokens(route, formatted) - base >= len(json.dumps(SCHEMA, separators=(",", ":")))


def test_the_worst_case_is_never_below_the_routers_own_estimate():
    """needs_of (what the router checks against a context window) counts ~1,000 tokens an
    image and ~4 characters a token: the budget's worst case counts more of each."""
    request = ChatRequest(
        messages=(
            Message("user", "Describe these " * 50, images=(IMAGE,) * 3),
            Message("assistant", "", tool_calls=(ToolCall("c1", "lookup", '{"q": "' + "y" * 5000 + '"}'),)),
            Message("tool", "z" * 3000, tool_call_id="c1", name="lookup"),
        ),
        system="Be brief. " * 100,
        tools=(Tool("lookup", "Looks things up.", SCHEMA),),
        response_format=ResponseFormat("json_schema", SCHEMA),
        max_tokens=16,
    )
    for kind in ("openai", "anthropic", "google", "openai_compatible"):
        route = _route(_model(kind))
        assert _input_tokens(route, request) >= needs_of(request).tokens - 16, kind


@pytest.mark.parametrize(
    ("kind", "figure"),
    [
        ("openai", 48_169),  # gpt-4o-mini, high detail, the largest image: 2,833 + 8 x 5,667
        ("anthropic", 5_000),  # 3.75 megapixels at 750 pixels a token
        ("google", 5_000),  # above 16 tiles of 258 (4,128) and Gemini 3's 1,120
        ("openai_compatible", 48_169),  # any model: the largest of all
    ],
)
def test_an_image_counts_the_most_its_provider_bills_for_one(kind, figure):
    route = _route(_model(kind))
    one = ChatRequest(messages=(Message("user", "", images=(IMAGE,)),), max_tokens=16)
    none = ChatRequest(messages=(Message("user", ""),), max_tokens=16)
    assert _input_tokens(route, one) - _input_tokens(route, none) == figure


def test_the_worst_case_is_taken_on_the_dearest_model_of_the_chain():
    """Per model: its own image figure at its own prices; the largest of the chain counts."""
    cheap_openai = _model("openai", pk=1, input_price="0.15", output_price="0.6")
    dear_anthropic = _model("anthropic", pk=2, input_price="15", output_price="75")
    request = ChatRequest(messages=(Message("user", "Hi", images=(IMAGE,) * 4),), max_tokens=16)
    both = worst_cost(_route(cheap_openai, dear_anthropic), request)
    assert both == max(worst_cost(_route(cheap_openai), request), worst_cost(_route(dear_anthropic), request))
    assert both == worst_cost(_route(dear_anthropic), request)  # 4 x 5,000 at $15/M over 4 x 48,169 at $0.15/M
    assert both >= cost_of(dear_anthropic, 4 * 5_000, 16)


PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
BUDGET = Decimal("0.001")
BODY = {
    "messages": [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}]
            + [{"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}] * 20,
        }
    ],
    "max_tokens": 20,
}


def test_20_concurrent_requests_with_20_images_stop_within_one_worst_case(live, sim, monkeypatch):
    """The reviewer's proof: each request holds its text only ($0.000306) and costs $0.0051
    (20 low-detail images at 85 tokens); 20 of them at once spent $0.021 of a $0.001 budget."""
    live.route("pam", [live.model("only", "openai", supports_vision=True)])
    live.key_obj.daily_budget_usd = BUDGET
    live.key_obj.save()
    monkeypatch.setattr(sim, "default_latency_ms", 50)  # the requests overlap
    request = ChatRequest(messages=(Message("user", "Hi", images=(IMAGE,) * 20),), max_tokens=20)
    worst = worst_cost(_route(_model("openai", max_output=100_000)), request)  # the route's model, as the hub has it

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _: chat_post(live.server.url, live.key, BODY), range(20)))
    runtime().ledger.flush()
    rows = UsageRecord.objects.filter(api_key=live.key_obj, outcome="ok")
    spent = rows.aggregate(total=Sum("cost_usd"))["total"]

    assert set(statuses) <= {200, 429} and statuses.count(200) == rows.count() >= 1
    assert all(row.cost_usd <= worst for row in rows)  # each hold covered its request
    assert spent <= BUDGET + worst
