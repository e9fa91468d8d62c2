"""Environment overrides: each convention, and which one wins."""

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from modelhub.routing.overrides import (
    NO_TOGGLE,
    SEVERAL_TOGGLES,
    UNKNOWN_MODEL,
    force_resolve,
    overrides_problems,
    route_env_prefix,
    route_resolve,
)
from modelhub.routing.snapshot import snapshot_build
from tests.factories import AIModelFactory, RouteFactory


@dataclass(frozen=True)
class Spec:
    pk: int
    model_id: str
    env_suffix: str = ""


S45, H35, FLASH, MINI, GPT5, MINI5 = (
    Spec(1, "sonnet-4-5", "SONNET_4_5"),
    Spec(2, "haiku-3-5", "HAIKU_3_5"),
    Spec(3, "flash", "GEMINI_FLASH"),
    Spec(4, "gpt-4o-mini", "GPT4O_MINI"),
    Spec(5, "gpt-5", "GPT5"),
    Spec(6, "gpt-5-mini", "GPT5_MINI"),
)
MODELS = {m.model_id: m for m in (S45, H35, FLASH, MINI, GPT5, MINI5)} | {"openai/gpt-5": GPT5}
PAM_CHAIN = (S45, H35, FLASH)


def resolve(env, route="pam", chain=PAM_CHAIN):
    return route_resolve(route=route, chain=chain, models=MODELS, environ=env)


def ids(result):
    return [m.model_id for m in result.chain]


def test_route_names_map_to_upper_case_prefixes():
    assert (route_env_prefix("pass_05"), route_env_prefix("pam")) == ("PASS_05", "PAM")


def test_no_variables_keep_the_stored_chain():
    result = resolve({"PATH": "/bin"})
    assert ids(result) == ["sonnet-4-5", "haiku-3-5", "flash"] and result.description is None


def test_force_model_is_the_only_model_of_every_route():
    for route in ("pam", "pass_1"):
        result = resolve({"FORCE_MODEL": "gpt-5"}, route=route)
        assert ids(result) == ["gpt-5"]
        assert result.description == "FORCE_MODEL=gpt-5 (the only model, every route)"


def test_default_route_model_sets_the_primary_and_keeps_fallbacks():
    result = resolve({"DEFAULT_PAM_MODEL": "flash"})
    assert ids(result) == ["flash", "sonnet-4-5", "haiku-3-5"]


def test_a_model_may_be_named_provider_slash_model_id():
    assert ids(resolve({"DEFAULT_PAM_MODEL": "openai/gpt-5"}))[0] == "gpt-5"


def test_pam_primary_and_fallbacks_name_the_whole_chain_in_n_order():
    env = {
        "PAM_PRIMARY_MODEL": "gpt-5",
        "PAM_FALLBACK_MODEL_2": "flash",
        "PAM_FALLBACK_MODEL_1": "gpt-4o-mini",
        "PAM_FALLBACK_MODEL_10": "haiku-3-5",
    }
    assert ids(resolve(env)) == ["gpt-5", "gpt-4o-mini", "flash", "haiku-3-5"]


def test_pam_primary_alone_keeps_the_stored_fallbacks():
    assert ids(resolve({"PAM_PRIMARY_MODEL": "haiku-3-5"})) == ["haiku-3-5", "sonnet-4-5", "flash"]


def test_pam_fallbacks_alone_keep_the_stored_primary():
    assert ids(resolve({"PAM_FALLBACK_MODEL_1": "gpt-5"})) == ["sonnet-4-5", "gpt-5"]


def test_pam_variables_concern_only_the_pam_route():
    assert ids(resolve({"PAM_PRIMARY_MODEL": "gpt-5"}, route="fast")) == ["sonnet-4-5", "haiku-3-5", "flash"]


def test_one_true_toggle_sets_the_routes_primary():
    env = {"PASS_1_USE_GPT5": "false", "PASS_1_USE_GPT5_MINI": "true"}
    result = resolve(env, route="pass_1", chain=(GPT5,))
    assert ids(result) == ["gpt-5-mini", "gpt-5"]
    assert result.description == "PASS_1_USE_GPT5_MINI=true (primary)"


def test_toggles_of_another_route_are_not_read():
    assert ids(resolve({"PASS_05_USE_GPT5": "true"}, route="pass_1", chain=(MINI5,))) == ["gpt-5-mini"]


def test_default_model_wins_over_pam_variables_and_toggles():
    env = {"DEFAULT_PAM_MODEL": "flash", "PAM_PRIMARY_MODEL": "gpt-5", "PAM_USE_GPT4O_MINI": "true"}
    result = resolve(env)
    assert ids(result)[0] == "flash"
    assert result.notes == [
        "PAM_USE_GPT4O_MINI=true (primary, shadowed by PAM_PRIMARY_MODEL)",
        "PAM_PRIMARY_MODEL=gpt-5 (primary, shadowed by DEFAULT_PAM_MODEL)",
        "DEFAULT_PAM_MODEL=flash (primary)",
    ]


def test_pam_primary_wins_over_a_toggle():
    assert ids(resolve({"PAM_PRIMARY_MODEL": "gpt-5", "PAM_USE_GPT4O_MINI": "true"}))[0] == "gpt-5"


def test_force_model_wins_over_everything_and_says_what_it_shadows():
    env = {"FORCE_MODEL": "haiku-3-5", "DEFAULT_PAM_MODEL": "flash", "PAM_FALLBACK_MODEL_1": "gpt-5"}
    result = resolve(env)
    assert ids(result) == ["haiku-3-5"]
    assert "shadowed by FORCE_MODEL" in result.notes[0] and "shadowed by FORCE_MODEL" in result.notes[1]


@pytest.mark.parametrize(
    "env,code,text",
    [
        ({"FORCE_MODEL": "gpt-9"}, UNKNOWN_MODEL, "FORCE_MODEL=gpt-9 names no enabled model"),
        ({"DEFAULT_PAM_MODEL": "gpt-9"}, UNKNOWN_MODEL, "DEFAULT_PAM_MODEL=gpt-9"),
        ({"PAM_FALLBACK_MODEL_1": "gpt-9"}, UNKNOWN_MODEL, "PAM_FALLBACK_MODEL_1=gpt-9"),
        ({"PAM_USE_GPT9": "true"}, UNKNOWN_MODEL, "no enabled model has env suffix GPT9"),
        ({"PAM_USE_GPT5": "false", "PAM_USE_GPT5_MINI": "0"}, NO_TOGGLE, "none is true"),
        (
            {"PAM_USE_GPT5": "true", "PAM_USE_GPT5_MINI": "yes"},
            SEVERAL_TOGGLES,
            "several model toggles true (PAM_USE_GPT5, PAM_USE_GPT5_MINI)",
        ),
    ],
)
def test_a_setting_that_cannot_be_obeyed_is_ignored_and_reported(env, code, text):
    result = resolve(env)
    assert ids(result) == ["sonnet-4-5", "haiku-3-5", "flash"]
    assert [p.code for p in result.problems] == [code] and text in result.problems[0].message
    assert result.description.startswith("ignored: ")


def test_a_false_toggle_for_an_unknown_suffix_is_not_a_toggle():
    assert resolve({"PAM_USE_RETIRED_THING": "false"}).problems == []


def test_problems_of_force_model_are_reported_once_for_all_routes():
    routes = {"pam": SimpleNamespace(chain=()), "fast": SimpleNamespace(chain=())}
    problems = overrides_problems(routes=routes, models=MODELS, environ={"FORCE_MODEL": "gpt-9"})
    assert len(problems) == 1


@pytest.mark.django_db
def test_the_snapshot_reads_the_environment_when_it_is_built(monkeypatch):
    first, second = AIModelFactory(), AIModelFactory(env_suffix="SECOND")
    route = RouteFactory(chain=[first, second])
    prefix = route_env_prefix(route.name)
    monkeypatch.setenv(f"{prefix}_USE_SECOND", "true")
    built = snapshot_build(version=1).routes[route.name]
    assert [m.model_id for m in built.chain] == [second.model_id, first.model_id]
    assert built.override == f"{prefix}_USE_SECOND=true (primary)"
    monkeypatch.delenv(f"{prefix}_USE_SECOND")
    assert snapshot_build(version=2).routes[route.name].override is None


def test_chat_obeys_default_route_model(hub, monkeypatch):
    primary, other = hub.model("primary-m", "anthropic"), hub.model("other-m", "openai")
    hub.route("pam", [primary, other])
    monkeypatch.setenv("DEFAULT_PAM_MODEL", "other-m")
    body = hub.chat().json()
    assert (body["model"], body["source"]) == ("other-m", "primary")


def test_force_model_is_what_answers_a_model_id_request():
    result = force_resolve(models=MODELS, environ={"FORCE_MODEL": "openai/gpt-5", "DEFAULT_PAM_MODEL": "flash"})
    assert ids(result) == ["gpt-5"]
    assert result.description == "FORCE_MODEL=openai/gpt-5 (the only model, every route)"


@pytest.mark.parametrize("env", [{}, {"FORCE_MODEL": "gpt-9"}, {"FORCE_MODEL": " "}])
def test_a_model_id_request_is_not_forced_without_an_obeyable_force_model(env):
    assert force_resolve(models=MODELS, environ=env) is None


def test_an_unknown_force_model_is_reported_even_without_routes():
    [problem] = overrides_problems(routes={}, models=MODELS, environ={"FORCE_MODEL": "gpt-9"})
    assert problem.code == UNKNOWN_MODEL


@pytest.mark.django_db
def test_the_snapshot_carries_the_forced_model_for_model_id_requests(monkeypatch):
    forced = AIModelFactory()
    assert snapshot_build(version=1).forced is None
    monkeypatch.setenv("FORCE_MODEL", forced.model_id)
    built = snapshot_build(version=2).forced
    assert [m.model_id for m in built.chain] == [forced.model_id]
    assert built.override == f"FORCE_MODEL={forced.model_id} (the only model, every route)"
