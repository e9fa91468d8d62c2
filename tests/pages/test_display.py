"""How the console shows money, a health badge and a configuration change."""

from decimal import Decimal

import pytest

from modelhub.pages.display import badge, chain_diff, change_summary, usd


@pytest.mark.parametrize(
    "value, shown",
    [(Decimal("0.000012340001"), "$0.00001234"), (Decimal("5"), "$5.00"), (Decimal("0.1035"), "$0.1035"), (None, "-")],
)
def test_money_is_rounded_for_display_only(value, shown):
    assert usd(value) == shown


def test_badge_says_until_when_a_model_cools_down():
    assert badge("cooling_down", 0.0 + 3600 * 13 + 61)["text"] == "cooling down until 13:01:01"
    assert badge("half_open")["text"] == "half open"


def chain(*items):
    return [{"model": f"prov/{name}", "enabled": not name.endswith("-off")} for name in items]


def test_chain_diff_lists_the_new_order_then_the_removed():
    lines = chain_diff(chain("a", "b", "c"), chain("c", "a", "d"))

    assert [(line.model, line.before, line.after, line.change) for line in lines] == [
        ("c", 3, 1, "moved"),
        ("a", 1, 2, "moved"),
        ("d", None, 3, "added"),
        ("b", 2, None, "removed"),
    ]


def test_a_route_edit_shows_its_chain_and_its_fields():
    before = {"route": {"enabled": True}, "chain": chain("a", "b")}
    after = {"route": {"enabled": False}, "chain": chain("a", "b-off")}

    assert change_summary(before, after) == "a → b-off (off) (b-off added; b removed); enabled: true → false"


def test_adds_deletes_and_plain_field_changes():
    assert change_summary(None, {"name": "k"}) == "added"
    assert change_summary({"name": "k"}, None) == "deleted"
    assert change_summary({"rpm_limit": None}, {"rpm_limit": 60}) == "rpm_limit: - → 60"
    health = {"m": {"state": "cooling_down"}}
    assert change_summary(health, {"m": {"state": "healthy"}}) == "m: state=cooling_down → state=healthy"
