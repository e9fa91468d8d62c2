"""Configure the hub for the shared benchmark harness: one OpenAI-compatible provider on
the harness's fake upstream, models good-model and bad-model, and the routes the harness
names (good-model alone; bad-model failing over to good-model), and good-complexity, a
complexity route whose tiers both answer from good-model. Prints an API key."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pam.settings")

import django

django.setup()

from modelhub.models import AIModel, ApiKey, ModelHealth, Provider, Route, RouteEntry  # noqa: E402
from modelhub.services import api_key_create  # noqa: E402

upstream = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8001/v1"
provider, _ = Provider.objects.update_or_create(
    name="bench", defaults=dict(kind="openai_compatible", base_url=upstream, api_key_env="BENCH_UPSTREAM_KEY")
)
models = {
    name: AIModel.objects.update_or_create(
        provider=provider,
        model_id=name,
        defaults=dict(input_price_per_mtok="0.15", output_price_per_mtok="0.60", max_output_tokens=4096),
    )[0]
    for name in ("good-model", "bad-model")
}
for name, chain in (("good-model", ["good-model"]), ("bad-model", ["bad-model", "good-model"])):
    route, _ = Route.objects.get_or_create(name=name)
    route.entries.all().delete()
    for position, model_id in enumerate(chain):
        RouteEntry.objects.create(route=route, model=models[model_id], position=position)
# The same answer behind a complexity route (MODEL=good-complexity): the classifier's cost.
Route.objects.update_or_create(
    name="good-complexity",
    defaults=dict(
        strategy="complexity",
        simple_route=Route.objects.get(name="good-model"),
        complex_route=Route.objects.get(name="good-model"),
    ),
)
ModelHealth.objects.filter(model__in=models.values()).delete()  # each run starts healthy
ApiKey.objects.filter(name="bench").delete()
print(api_key_create(name="bench")[1])
