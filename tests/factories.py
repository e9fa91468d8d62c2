"""factory_boy factories for the registry, health, keys and the ledger.

Names come from sequences ("prov-N", "test-model-N", "route-N") so they never collide
with the seeded demo catalog. Examples:

    model = AIModelFactory(provider=ProviderFactory(kind="anthropic"), model_id="test-model-a")
    route = RouteFactory(chain=[model_a, model_b])        # entries at positions 0, 1
    RouteEntryFactory(route=route, model=model_c)          # appended at the next position
    ModelHealthFactory(model=model_a, cooling_down=True)   # or half_open=True
    key = ApiKeyFactory(secret="pam_known-secret")         # only its hash is stored
    ApiKeyFactory(expired=True)                            # expired a minute ago
"""

import secrets
from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from modelhub.models import AIModel, ApiKey, ModelHealth, Provider, Route, RouteEntry, UsageRecord
from modelhub.services import API_KEY_PREFIX, api_key_hash


class ProviderFactory(DjangoModelFactory):
    class Meta:
        model = Provider

    name = factory.Sequence(lambda n: f"prov-{n}")
    kind = Provider.Kind.OPENAI_COMPATIBLE
    base_url = ""
    api_key_env = factory.Sequence(lambda n: f"PAM_TEST_PROVIDER_{n}_API_KEY")
    timeout_seconds = 30.0
    enabled = True


class AIModelFactory(DjangoModelFactory):
    class Meta:
        model = AIModel

    provider = factory.SubFactory(ProviderFactory)
    model_id = factory.Sequence(lambda n: f"test-model-{n}")
    display_name = factory.LazyAttribute(lambda o: f"Test {o.model_id}")
    context_window = 128_000
    max_output_tokens = 4096
    input_price_per_mtok = Decimal("1.000000")
    output_price_per_mtok = Decimal("4.000000")
    max_tokens_param = AIModel.MaxTokensParam.MAX_TOKENS
    enabled = True
    status = AIModel.Status.ACTIVE


def _next_position(entry) -> int:
    route = entry.route
    return route.entries.count() if route.pk else 0


class RouteEntryFactory(DjangoModelFactory):
    """Appended at the end of its route's chain unless ``position`` is given."""

    class Meta:
        model = RouteEntry

    route = factory.SubFactory("tests.factories.RouteFactory")
    model = factory.SubFactory(AIModelFactory)
    position = factory.LazyAttribute(_next_position)
    weight = 100
    enabled = True


class RouteFactory(DjangoModelFactory):
    """``chain=[model, ...]`` adds entries at positions 0, 1, ... in that order."""

    class Meta:
        model = Route
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"route-{n}")
    description = ""
    strategy = Route.Strategy.PRIORITY
    latency_budget_ms = None
    enabled = True

    @factory.post_generation
    def chain(route, create, models, **kwargs):
        if create and models:
            for position, model in enumerate(models):
                RouteEntryFactory(route=route, model=model, position=position)


class ModelHealthFactory(DjangoModelFactory):
    class Meta:
        model = ModelHealth

    model = factory.SubFactory(AIModelFactory)
    state = ModelHealth.State.HEALTHY
    success_count = 9
    failure_count = 1

    class Params:
        cooling_down = factory.Trait(
            state=ModelHealth.State.COOLING_DOWN,
            cooldown_until=factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=5)),
            consecutive_failures=3,
            last_error_kind="rate_limited",
            last_error_message="429 Too Many Requests",
            last_failure_at=factory.LazyFunction(timezone.now),
        )
        half_open = factory.Trait(
            state=ModelHealth.State.HALF_OPEN,
            cooldown_until=factory.LazyFunction(lambda: timezone.now() - timedelta(seconds=1)),
            consecutive_failures=1,
            last_error_kind="timeout",
            last_error_message="request timed out",
        )


class ApiKeyFactory(DjangoModelFactory):
    """Pass ``secret=...`` to know the key; only its prefix and hash are stored."""

    class Meta:
        model = ApiKey

    class Params:
        secret = factory.LazyFunction(lambda: API_KEY_PREFIX + secrets.token_urlsafe(32))
        expired = factory.Trait(expires_at=factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1)))

    name = factory.Sequence(lambda n: f"key-{n}")
    prefix = factory.LazyAttribute(lambda o: o.secret[:12])
    key_hash = factory.LazyAttribute(lambda o: api_key_hash(o.secret))
    user = None
    is_active = True


class UsageRecordFactory(DjangoModelFactory):
    class Meta:
        model = UsageRecord

    created_at = factory.LazyFunction(timezone.now)
    request_id = factory.Sequence(lambda n: f"req-test-{n:08d}")
    route = "route-test"
    provider = "prov-test"
    model = "test-model"
    input_tokens = 12
    output_tokens = 34
    cost_usd = Decimal("0.000148000000")
    latency_ms = 250
    outcome = "ok"
    attempt = 1
    is_fallback = False


# The secrets of a staff user's key and of a plain user's key (``staff_and_user_keys``).
STAFF_SECRET, USER_SECRET = "pam_staff-secret", "pam_user-secret"


def staff_and_user_keys(django_user_model):
    """A staff user "ops" with key STAFF_SECRET and a plain user with key USER_SECRET."""
    staff = django_user_model.objects.create_user("ops", is_staff=True)
    user = django_user_model.objects.create_user("plain")
    ApiKeyFactory(secret=STAFF_SECRET, user=staff, name="ops-key")
    ApiKeyFactory(secret=USER_SECRET, user=user)
    return staff, user
