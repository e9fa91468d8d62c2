"""The admin index (and its sidebar) grouped by what an operator looks for: the registry,
the traffic, the money, the schedules, then who changed what, instead of one alphabetical
list per app. A model not named here lands in "Other", so a new admin is never hidden."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse

SECTIONS = (
    ("registry", "Registry: what can answer", ("Route", "RouteEntry", "AIModel", "Provider", "Rollout", "PriceCheck")),
    ("traffic", "Traffic: who calls, what happens", ("ModelHealth", "UsageRecord", "ApiKey", "Conversation")),
    ("money", "Money: costs and alerts", ("DailyCost", "AlertRule", "Alert", "RollupDay")),
    (
        "schedules",
        "Schedules: what runs when",
        ("PeriodicTask", "IntervalSchedule", "CrontabSchedule", "SolarSchedule", "ClockedSchedule"),
    ),
    ("changes", "Changes and users", ("ConfigChange", "User", "Group")),
)


def sections_of(app_list: list[dict]) -> list[dict]:
    """``app_list`` (admin's, one entry per app) regrouped into SECTIONS, each in its own
    order; the models no section names, in a last one."""
    models = {model["object_name"]: model for app in app_list for model in app["models"]}
    grouped = []
    for label, name, object_names in SECTIONS:
        found = [models.pop(object_name) for object_name in object_names if object_name in models]
        if found:
            grouped.append(_section(label, name, found))
    if models:
        grouped.append(_section("other", "Other", sorted(models.values(), key=lambda m: m["name"])))
    return grouped


def _section(label: str, name: str, models: list[dict]) -> dict:
    return {
        "name": name,
        "app_label": label,
        "app_url": f"{reverse('admin:index')}#{label}",  # never in a page's path: no section marked current
        "has_module_perms": True,
        "models": models,
    }


def grouped_app_list(get_app_list):
    """Admin's ``get_app_list`` with the whole site's list (index, sidebar) in sections;
    an app's own page (``app_label`` given) keeps admin's list."""

    def app_list(request, app_label=None):
        found = get_app_list(request, app_label)
        return found if app_label else sections_of(found)

    return app_list


admin.site.get_app_list = grouped_app_list(admin.site.get_app_list)
