"""The catalog a new install starts with: every model the source documents name, with the
prices, windows and parameters they give, and their routes. Seeded by migration; seeding
only ever adds what is missing, so an operator's edits are never overwritten.

Figures the documents do not give (context windows and output limits of the Anthropic,
OpenAI-4o and Groq models; Groq prices) are the providers' published ones."""

from datetime import date
from decimal import Decimal as D

PROVIDERS = [
    # name, kind, base_url, api_key_env
    ("anthropic", "anthropic", "", "ANTHROPIC_API_KEY"),
    ("openai", "openai", "", "OPENAI_API_KEY"),
    ("google", "google", "", "GOOGLE_API_KEY"),
    ("groq", "openai_compatible", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
]

_CLAUDE = dict(context_window=200_000, max_tokens_param="max_tokens")
_GPT4O = dict(context_window=128_000, max_output_tokens=16_384, max_tokens_param="max_tokens")
_GPT5 = dict(
    context_window=400_000,
    max_output_tokens=128_000,
    supports_temperature=False,
    max_tokens_param="max_completion_tokens",
)
_GEMINI15 = dict(max_output_tokens=8_192, max_tokens_param="maxOutputTokens")
_GEMINI25 = dict(context_window=1_000_000, max_output_tokens=65_536, max_tokens_param="maxOutputTokens")
_GROQ = dict(context_window=131_072, max_output_tokens=8_192, max_tokens_param="max_tokens")

MODELS = [
    # provider, model_id, display name, input $/1M, output $/1M, description, other fields
    (
        "anthropic",
        "claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        "3",
        "15",
        "Best quality, current default",
        dict(_CLAUDE, max_output_tokens=64_000, env_suffix="SONNET_4_5"),
    ),
    (
        "anthropic",
        "claude-haiku-4-5-20250514",
        "Claude Haiku 4.5",
        "1",
        "5",
        "Fast + cheap + capable",
        dict(_CLAUDE, max_output_tokens=64_000, env_suffix="HAIKU_4_5"),
    ),
    (
        "anthropic",
        "claude-3-5-haiku-20241022",
        "Claude Haiku 3.5",
        "1",
        "5",
        "Previous Haiku",
        dict(_CLAUDE, max_output_tokens=8_192, env_suffix="HAIKU_3_5"),
    ),
    (
        "anthropic",
        "claude-3-7-sonnet-20250219",
        "Claude Sonnet 3.7",
        "3",
        "15",
        "Previous Sonnet",
        dict(_CLAUDE, max_output_tokens=64_000, env_suffix="SONNET_3_7"),
    ),
    (
        "anthropic",
        "claude-opus-4-20250514",
        "Claude Opus 4",
        "15",
        "75",
        "Most powerful (expensive)",
        dict(_CLAUDE, max_output_tokens=32_000, env_suffix="OPUS_4"),
    ),
    (
        "google",
        "gemini-1.5-flash-latest",
        "Gemini 1.5 Flash",
        "0.075",
        "0.30",
        "Extremely cheap fallback",
        dict(_GEMINI15, context_window=1_048_576, env_suffix="GEMINI_1_5_FLASH"),
    ),
    (
        "google",
        "gemini-1.5-pro-latest",
        "Gemini 1.5 Pro",
        "1.25",
        "5",
        "Good quality, huge context",
        dict(_GEMINI15, context_window=2_097_152, env_suffix="GEMINI_1_5_PRO"),
    ),
    ("google", "gemini-2.5-pro", "Gemini 2.5 Pro", "1.25", "10", "", dict(_GEMINI25, env_suffix="GEMINI_2_5_PRO")),
    (
        "google",
        "gemini-2.5-flash",
        "Gemini 2.5 Flash",
        "0.30",
        "2.50",
        "",
        dict(_GEMINI25, env_suffix="GEMINI_2_5_FLASH"),
    ),
    (
        "google",
        "gemini-2.5-flash-lite",
        "Gemini 2.5 Flash-Lite",
        "0.10",
        "0.40",
        "",
        dict(_GEMINI25, env_suffix="GEMINI_2_5_FLASH_LITE"),
    ),
    ("openai", "gpt-4o", "GPT-4o", "2.5", "10", "OpenAI flagship", dict(_GPT4O, env_suffix="GPT4O")),
    (
        "openai",
        "gpt-4o-mini",
        "GPT-4o Mini",
        "0.15",
        "0.60",
        "Cheap OpenAI option",
        dict(_GPT4O, env_suffix="GPT4O_MINI"),
    ),
    ("openai", "gpt-5", "GPT-5", "1.25", "10", "Reasoning model", dict(_GPT5, env_suffix="GPT5")),
    ("openai", "gpt-5-mini", "GPT-5-mini", "0.25", "2", "Reasoning model", dict(_GPT5, env_suffix="GPT5_MINI")),
    ("openai", "gpt-5-nano", "GPT-5-nano", "0.05", "0.40", "Reasoning model", dict(_GPT5, env_suffix="GPT5_NANO")),
    (
        "groq",
        "llama-3.1-8b-instant",
        "Llama 3.1 8B Instant",
        "0.05",
        "0.08",
        "Tool calls, routing, short answers",
        dict(_GROQ, env_suffix="LLAMA_3_1_8B"),
    ),
    (
        "groq",
        "llama-3.3-70b-versatile",
        "Llama 3.3 70B Versatile",
        "0.59",
        "0.79",
        "Multi-step reasoning",
        dict(_GROQ, env_suffix="LLAMA_3_3_70B"),
    ),
    (
        "groq",
        "llama-3.1-70b-versatile",
        "Llama 3.1 70B Versatile",
        "0.59",
        "0.79",
        "",
        dict(_GROQ, env_suffix="LLAMA_3_1_70B"),
    ),
    (
        "groq",
        "mixtral-8x7b-32768",
        "Mixtral 8x7B",
        "0.24",
        "0.24",
        "Summarization",
        dict(context_window=32_768, max_output_tokens=32_768, max_tokens_param="max_tokens", env_suffix="MIXTRAL_8X7B"),
    ),
]

ROUTES = [
    # name, description, chain (position order)
    (
        "pam",
        "PAM assistant (hot-swap document)",
        ["claude-sonnet-4-5-20250929", "claude-3-5-haiku-20241022", "gemini-1.5-flash-latest", "gpt-4o-mini"],
    ),
    ("fast", "Tool calls, routing, short responses", ["llama-3.1-8b-instant"]),
    (
        "reasoning",
        "Multi-step planning, analysis, decisions",
        ["llama-3.3-70b-versatile", "llama-3.1-70b-versatile", "llama-3.1-8b-instant"],
    ),
    ("summarization", "Condensing, rewriting, reporting", ["llama-3.1-8b-instant", "mixtral-8x7b-32768"]),
    ("fallback", "Universal fallback", ["llama-3.1-8b-instant"]),
    ("pass_05", "Encounter discovery (Exora pass 0.5)", ["gemini-2.5-flash"]),
    ("pass_1", "Entity detection (Exora pass 1)", ["gpt-5"]),
]


# What each seeded model can take (filled by migration 0010, after the models exist), from
# the providers' documentation: every Claude 3+ model, GPT-4o/GPT-5 and Gemini model reads
# images and answers to a JSON schema (Claude through a forced tool); the Groq-hosted Llama
# and Mixtral models take text only and no schema. Reasoning models (GPT-5) refuse the
# sampling parameters; Claude 4.5 models refuse top_p beside temperature, so it is never sent.
_VISION_SCHEMA = dict(supports_vision=True, supports_json_schema=True)
_REASONING_PARAMS = ["stop", "top_p", "presence_penalty", "frequency_penalty"]
CAPABILITIES = {
    "claude-sonnet-4-5-20250929": dict(_VISION_SCHEMA, params_unsupported=["top_p"]),
    "claude-haiku-4-5-20250514": dict(_VISION_SCHEMA, params_unsupported=["top_p"]),
    "claude-3-5-haiku-20241022": dict(_VISION_SCHEMA),
    "claude-3-7-sonnet-20250219": dict(_VISION_SCHEMA),
    "claude-opus-4-20250514": dict(_VISION_SCHEMA),
    "gemini-1.5-flash-latest": dict(_VISION_SCHEMA),
    "gemini-1.5-pro-latest": dict(_VISION_SCHEMA),
    "gemini-2.5-pro": dict(_VISION_SCHEMA),
    "gemini-2.5-flash": dict(_VISION_SCHEMA),
    "gemini-2.5-flash-lite": dict(_VISION_SCHEMA),
    "gpt-4o": dict(_VISION_SCHEMA),
    "gpt-4o-mini": dict(_VISION_SCHEMA),
    "gpt-5": dict(_VISION_SCHEMA, params_unsupported=_REASONING_PARAMS),
    "gpt-5-mini": dict(_VISION_SCHEMA, params_unsupported=_REASONING_PARAMS),
    "gpt-5-nano": dict(_VISION_SCHEMA, params_unsupported=_REASONING_PARAMS),
    "llama-3.1-8b-instant": dict(supports_vision=False, supports_json_schema=False),
    "llama-3.3-70b-versatile": dict(supports_vision=False, supports_json_schema=False),
    "llama-3.1-70b-versatile": dict(supports_vision=False, supports_json_schema=False),
    "mixtral-8x7b-32768": dict(supports_vision=False, supports_json_schema=False),
}
# The task routes of the BizPilot document go on with the universal fallback route.
FALLBACK_ROUTES = {"fast": "fallback", "reasoning": "fallback", "summarization": "fallback"}


def _model_get_or_create(AIModel, provider, row: tuple, **more):
    """A catalog row's model, created with its figures when missing (an existing one is
    never touched: the operator's edits stand)."""
    _, model_id, display, price_in, price_out, description, extra = row
    model, _ = AIModel.objects.get_or_create(
        provider=provider,
        model_id=model_id,
        defaults=dict(
            display_name=display,
            input_price_per_mtok=D(price_in),
            output_price_per_mtok=D(price_out),
            description=description,
            **extra,
            **more,
        ),
    )
    return model


def catalog_seed(*, Provider, AIModel, Route, RouteEntry) -> None:
    """Create whatever of the catalog is missing; never touch existing rows. Takes the
    model classes so that a migration can pass its historical ones."""
    providers = {}
    for name, kind, base_url, key_env in PROVIDERS:
        providers[name], _ = Provider.objects.get_or_create(
            name=name, defaults=dict(kind=kind, base_url=base_url, api_key_env=key_env)
        )
    models = {row[1]: _model_get_or_create(AIModel, providers[row[0]], row) for row in MODELS}
    for name, description, chain in ROUTES:
        route, created = Route.objects.get_or_create(name=name, defaults=dict(description=description))
        if created:
            RouteEntry.objects.bulk_create(
                RouteEntry(route=route, model=models[m], position=i) for i, m in enumerate(chain)
            )


def capabilities_seed(*, AIModel, Route) -> None:
    """Fill what the seeded models can take, and the task routes' fallback route. Models
    an operator has edited since are set too (the fields are new); routes that already
    name a fallback route keep it."""
    for model_id, fields in CAPABILITIES.items():
        AIModel.objects.filter(model_id=model_id).update(**fields)
    routes = {r.name: r for r in Route.objects.filter(name__in={*FALLBACK_ROUTES, *FALLBACK_ROUTES.values()})}
    for name, fallback in FALLBACK_ROUTES.items():
        if name in routes and fallback in routes and routes[name].fallback_route_id is None:
            Route.objects.filter(pk=routes[name].pk).update(fallback_route=routes[fallback])


# -- lifecycle (migration 0012) --
#
# Retirement dates, by source:
# - Anthropic: the SDK's own table, ``DEPRECATED_MODELS`` in anthropic.resources.messages
#   (anthropic 2.12.0): the end-of-life day of each id. Discovery re-reads it
#   (``modelhub.providers.retirements``), so an SDK upgrade refreshes these.
# - OpenAI: the SDK's ``ChatModel`` type (openai.types.shared.chat_model, openai 3.54.0)
#   lists "Announced shutdown date" per id; its model listing carries ``shutdown_date`` too.
# - Google: the Gemini 1.5 models were shut down on 2025-09-24 (the Gemini API's
#   deprecations page; the -latest aliases pointed at the -002 versions then retired). The
#   google-genai SDK ships no table. Gemini 2.5 dates: not known here, left blank.
# - Groq: its deprecations page: llama-3.1-70b-versatile shut down on 2024-12-20 and
#   mixtral-8x7b-32768 on 2025-03-20, both with llama-3.3-70b-versatile as the replacement.
# No source gives the day each deprecation was announced, so ``deprecated_on`` stays blank:
# an announced retirement date alone makes a model deprecated (modelhub.lifecycle).
#
# Successors: the same family's next version where the SDK knows one at the same or a lower
# price (Sonnet 4.5 and 3.7 -> Sonnet 4.6, Haiku 3.5 -> Haiku 4.5, Opus 4 -> Opus 4.6, Gemini
# 1.5 -> 2.5, Groq -> Llama 3.3 70B). The OpenAI models get none: their newer ids (gpt-5.4,
# gpt-5.5) cost two to three times as much, an operator's choice (discovery proposes them).
# The successors the catalog lacked are added here, with prices and windows from the
# genai-prices data (prices checked 2026-07-29) and the output limits Anthropic publishes.
_SOURCE_ANTHROPIC = "End of life {day} by the Anthropic SDK's DEPRECATED_MODELS table (anthropic 2.12.0)."
_SOURCE_OPENAI = "Shutdown {day} announced in the OpenAI SDK's ChatModel deprecations (openai 3.54.0)."
_SOURCE_GEMINI_15 = "Shut down {day} (Gemini API deprecations: the Gemini 1.5 models were retired in September 2025)."
_SOURCE_GROQ = "Shut down {day} (Groq's deprecations page), replaced by llama-3.3-70b-versatile."
NEVER_LISTED = (
    "Never listed by Anthropic: the hot-swap document's id. The real Claude Haiku 4.5 is "
    "claude-haiku-4-5-20251001 (the SDK's model list), set as its successor."
)
SUCCESSOR_MODELS = [
    # as MODELS; created by lifecycle_seed when missing
    (
        "anthropic",
        "claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        "1",
        "5",
        "Fast + cheap + capable (Anthropic's Haiku 4.5 id)",
        dict(_CLAUDE, max_output_tokens=64_000, env_suffix="HAIKU_4_5_20251001"),
    ),
    (
        "anthropic",
        "claude-sonnet-4-6",
        "Claude Sonnet 4.6",
        "3",
        "15",
        "Successor of Claude Sonnet 4.5",
        dict(_CLAUDE, context_window=1_000_000, max_output_tokens=64_000, env_suffix="SONNET_4_6"),
    ),
    (
        "anthropic",
        "claude-opus-4-6",
        "Claude Opus 4.6",
        "5",
        "25",
        "Successor of Claude Opus 4",
        dict(_CLAUDE, max_output_tokens=128_000, env_suffix="OPUS_4_6"),
    ),
]
SUCCESSOR_CAPABILITIES = dict(_VISION_SCHEMA, params_unsupported=["top_p"])


def _dated(note: str, day: str, successor: str = "") -> dict:
    return dict(retires_on=date.fromisoformat(day), note=note.format(day=day), successor=successor)


LIFECYCLE = {
    # model id: retires_on, the note saying where it comes from, successor (a model id)
    "claude-sonnet-4-5-20250929": _dated(_SOURCE_ANTHROPIC, "2026-11-30", "claude-sonnet-4-6"),
    "claude-3-7-sonnet-20250219": _dated(_SOURCE_ANTHROPIC, "2026-02-19", "claude-sonnet-4-6"),
    "claude-3-5-haiku-20241022": _dated(_SOURCE_ANTHROPIC, "2026-02-19", "claude-haiku-4-5-20251001"),
    "claude-opus-4-20250514": _dated(_SOURCE_ANTHROPIC, "2026-06-15", "claude-opus-4-6"),
    "claude-haiku-4-5-20250514": dict(retires_on=None, note=NEVER_LISTED, successor="claude-haiku-4-5-20251001"),
    "gpt-5": _dated(_SOURCE_OPENAI, "2026-12-11"),
    "gpt-5-mini": _dated(_SOURCE_OPENAI, "2026-12-11"),
    "gpt-5-nano": _dated(_SOURCE_OPENAI, "2026-12-11"),
    "gpt-4o": _dated(_SOURCE_OPENAI, "2027-01-14"),
    "gpt-4o-mini": _dated(_SOURCE_OPENAI, "2027-01-14"),
    "gemini-1.5-flash-latest": _dated(_SOURCE_GEMINI_15, "2025-09-24", "gemini-2.5-flash"),
    "gemini-1.5-pro-latest": _dated(_SOURCE_GEMINI_15, "2025-09-24", "gemini-2.5-pro"),
    "llama-3.1-70b-versatile": _dated(_SOURCE_GROQ, "2024-12-20", "llama-3.3-70b-versatile"),
    "mixtral-8x7b-32768": _dated(_SOURCE_GROQ, "2025-03-20", "llama-3.3-70b-versatile"),
}


def lifecycle_seed(*, Provider, AIModel) -> None:
    """Add the missing successor models, then set every catalog model's retirement date,
    note and successor. Models an operator has edited since are set too (the fields are
    new); a successor is looked up at the same provider."""
    providers = {p.name: p for p in Provider.objects.filter(name__in={m[0] for m in SUCCESSOR_MODELS})}
    for row in SUCCESSOR_MODELS:
        if row[0] in providers:
            _model_get_or_create(AIModel, providers[row[0]], row, **SUCCESSOR_CAPABILITIES)
    for model in AIModel.objects.filter(model_id__in=LIFECYCLE):
        facts = LIFECYCLE[model.model_id]
        model.retires_on, model.lifecycle_note = facts["retires_on"], facts["note"]
        if facts["successor"]:
            model.successor = AIModel.objects.filter(provider_id=model.provider_id, model_id=facts["successor"]).first()
        model.save(update_fields=["retires_on", "lifecycle_note", "successor"])
