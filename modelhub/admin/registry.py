"""The operator's console. Every action is a call to a service; nothing here decides how
routing behaves. Provider keys are shown as "set" / "missing", never by value."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from .. import audit, lifecycle, selectors, services
from ..calibration import calibrate_route
from ..models import AIModel, ModelHealth, Provider, Route, RouteEntry
from ..pages import figures
from ..pages.display import badge, badge_html, usd
from ..routing.classifier import classifier_config_errors
from ..stats import NO_REQUESTS, stats_key, stats_read, window_seconds
from .audit import AuditedAdmin, admin_actor, restore_chains
from .prices import check_prices_now
from .readonly import ReadOnlyAdminMixin
from .rollouts import start_shadow_rollout

admin.site.site_header = "PAM Model Hub"
admin.site.site_title = "PAM Model Hub"
admin.site.index_title = "Operator's console"

LIFECYCLE_COLOURS = {
    lifecycle.ACTIVE: "#1e7e34",
    lifecycle.DEPRECATED: "#6c757d",
    lifecycle.RETIRING_SOON: "#b36b00",
    lifecycle.RETIRED: "#c82333",
}
ERROR_PREVIEW_CHARS = 80


def key_env_source(name: str) -> str | None:
    """The environment variable that supplies a provider's key (its name or an alias), or
    None. Only presence is checked; the value is never read into anything displayed."""
    aliases = settings.MODELHUB.get("KEY_ENV_ALIASES", {}).get(name, ())
    return next((n for n in (name, *aliases) if n and os.environ.get(n)), None)


def health_badge(health: ModelHealth | None):
    """Green healthy, amber cooling down until HH:MM:SS, grey half open (the stored row;
    absent: never failed). A cooldown that has run out is shown as half open: the next
    request is the trial."""
    if health is None or health.state == ModelHealth.State.HEALTHY:
        return badge_html(badge("healthy"))
    until, title = health.cooldown_until, health.cooldown_reason or health.last_error_kind
    if health.state == ModelHealth.State.COOLING_DOWN and (until is None or until > timezone.now()):
        return badge_html(badge("cooling_down", until, title))
    return badge_html(badge("half_open", title=title))


def lifecycle_badge(model: AIModel):
    """Green active, grey deprecated, amber retiring within 30 days, red retired (routing
    then puts its successor in its place); the title says when, who follows, and why."""
    today = datetime.now(UTC).date()  # the day routing goes by
    state = lifecycle.lifecycle_state(model, today)
    successor = f"successor: {model.successor.model_id}" if model.successor_id else ""
    title = " · ".join(p for p in (lifecycle.state_text(model, today), successor, model.lifecycle_note) if p)
    return format_html(
        '<span class="lifecycle lifecycle-{}" style="color:{};font-weight:bold" title="{}">● {}</span>',
        state,
        LIFECYCLE_COLOURS[state],
        title,
        state.replace("_", " "),
    )


def _health_of(model: AIModel) -> ModelHealth | None:
    return getattr(model, "health", None)  # absent row: never failed, so healthy


def override_badge(text: str | None):
    if not text:
        return "-"
    return format_html('<span class="env-override" style="color:#b36b00;font-weight:bold">{}</span>', text)


# --- Providers -----------------------------------------------------------------------


@admin.register(Provider)
class ProviderAdmin(AuditedAdmin):
    list_display = ("name", "kind", "base_url_shown", "api_key_env", "key_status", "timeout_seconds", "enabled")
    list_editable = ("enabled",)
    list_filter = ("kind", "enabled")
    search_fields = ("name", "base_url")
    fields = ("name", "kind", "base_url", "api_key_env", "key_status", "timeout_seconds", "enabled")
    readonly_fields = ("key_status",)

    @admin.display(description="base URL", ordering="base_url")
    def base_url_shown(self, provider):
        return provider.base_url or "(SDK default / env)"

    @admin.display(description="key in environment")
    def key_status(self, provider):
        source = key_env_source(provider.api_key_env)
        if source is None:
            return mark_safe('<span class="key-status key-missing" style="color:#b00">missing</span>')
        alias = f" (via {source})" if source != provider.api_key_env else ""
        return format_html('<span class="key-status key-set" style="color:#1e7e34">set</span>{}', alias)


# --- AI models -----------------------------------------------------------------------


@admin.register(AIModel)
class AIModelAdmin(AuditedAdmin):
    list_display = (
        "model_id",
        "provider",
        "display_name",
        "enabled",
        "status",
        "lifecycle_status",
        "input_price",
        "output_price",
        "context_window",
        "max_output_tokens",
        "health_status",
        "missing_since",
        "env_override",
    )
    list_display_links = ("model_id",)
    list_editable = ("enabled",)
    list_filter = ("provider", "enabled", "status", "missing_since")
    list_select_related = ("provider", "health", "successor")
    search_fields = ("model_id", "display_name")
    readonly_fields = ("health_status", "env_override", "lifecycle_status")
    actions = ("enable", "disable", "reset_health", check_prices_now, start_shadow_rollout)
    fieldsets = (
        (
            None,
            {"fields": ("provider", "model_id", "display_name", "enabled", "status", "health_status", "env_override")},
        ),
        (
            "Limits and prices",
            {"fields": ("context_window", "max_output_tokens", "input_price_per_mtok", "output_price_per_mtok")},
        ),
        (
            "Capabilities (requests that need one skip models without it)",
            {"fields": ("supports_tools", "supports_vision", "supports_json_schema", "params_unsupported")},
        ),
        (
            "Parameters",
            {"fields": ("max_tokens_param", "supports_streaming", "supports_temperature", "env_suffix")},
        ),
        (
            "Lifecycle (once retired, routing puts the successor in its place)",
            {"fields": ("lifecycle_status", "deprecated_on", "retires_on", "successor", "lifecycle_note")},
        ),
        (None, {"fields": ("description",)}),
    )

    @admin.display(description="input $ / 1M", ordering="input_price_per_mtok")
    def input_price(self, model):
        return usd(model.input_price_per_mtok)

    @admin.display(description="output $ / 1M", ordering="output_price_per_mtok")
    def output_price(self, model):
        return usd(model.output_price_per_mtok)

    @admin.display(description="lifecycle", ordering="retires_on")
    def lifecycle_status(self, model):
        return lifecycle_badge(model) if model.pk else "-"

    @admin.display(description="health")
    def health_status(self, model):
        return health_badge(_health_of(model)) if model.pk else "-"

    @admin.display(description="environment override")
    def env_override(self, model):
        """Routes whose primary the environment makes this model, and by which variable."""
        routes = [
            f"{r.name}: {r.override}"
            for r in selectors.routes_live().values()
            if r.override and r.chain and r.chain[0].pk == model.pk
        ]
        return override_badge(" | ".join(routes))

    @admin.action(description="Enable selected models", permissions=["change"])
    def enable(self, request, queryset):
        for model in queryset:
            services.model_set_enabled(model=model, enabled=True, by=admin_actor(request))
        self.message_user(request, f"Enabled {len(queryset)} model(s).", messages.SUCCESS)

    @admin.action(description="Disable selected models", permissions=["change"])
    def disable(self, request, queryset):
        for model in queryset:
            services.model_set_enabled(model=model, enabled=False, by=admin_actor(request))
        self.message_user(request, f"Disabled {len(queryset)} model(s).", messages.SUCCESS)

    @admin.action(description="Reset health (back in rotation now)", permissions=["change"])
    def reset_health(self, request, queryset):
        count = services.health_reset(models=queryset, by=admin_actor(request))
        self.message_user(request, f"Reset health of {count} model(s).", messages.SUCCESS)


# --- Routes --------------------------------------------------------------------------


class RouteEntryInline(admin.TabularInline):
    model = RouteEntry
    fields = ("model", "position", "weight", "enabled")
    ordering = ("position", "id")
    autocomplete_fields = ("model",)
    extra = 1


def chain_text(entries) -> str:
    """The fallback chain in order, with entries that will be skipped marked."""

    def label(entry):
        if not entry.enabled:
            return f"{entry.model.model_id} (disabled)"
        return entry.model.model_id if entry.model.enabled else f"{entry.model.model_id} (model disabled)"

    return " → ".join(label(e) for e in entries) or "(empty)"


class RouteForm(forms.ModelForm):
    class Meta:
        model = Route
        fields = "__all__"

    def clean_classifier_config(self):
        config = self.cleaned_data["classifier_config"]
        errors = classifier_config_errors(config)
        if errors:
            raise forms.ValidationError(errors)
        return config


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    form = RouteForm
    list_display = (
        "name",
        "enabled",
        "chain",
        "env_override",
        "answers_from",
        "fallback_route",
        "latency_budget_ms",
        "strategy",
    )
    list_editable = ("enabled",)
    list_select_related = ("fallback_route", "simple_route", "complex_route")
    list_filter = ("enabled", "strategy")
    search_fields = ("name", "description")
    readonly_fields = ("env_override", "answers_from")
    inlines = (RouteEntryInline,)
    actions = ("restore_previous_chain", "calibrate")
    fieldsets = (
        (None, {"fields": ("name", "description", "enabled", "env_override", "answers_from")}),
        ("Failover", {"fields": ("latency_budget_ms", "ttft_timeout_ms", "fallback_route")}),
        (
            "Strategy",
            {
                "fields": (
                    "strategy",
                    "simple_route",
                    "complex_route",
                    "strong_share_target",
                    "complexity_threshold",
                    "classifier_config",
                    "class_budgets_ms",
                )
            },
        ),
    )

    def get_queryset(self, request):
        return selectors.routes_with_chains(routes=super().get_queryset(request))

    @admin.display(description="chain (primary first)")
    def chain(self, route):
        return chain_text(route.entries.all())

    @admin.display(description="environment override in force")
    def env_override(self, route):
        spec = selectors.routes_live().get(route.name) if route.pk else None
        return override_badge(spec.override if spec else None)

    @admin.display(description="answers from now")
    def answers_from(self, route):
        """The order chat tries now: enabled models only, overrides applied, cooling-down
        models passed over (named, with the time they come back)."""
        return figures.answers_now(selectors.routes_live().get(route.name)) if route.pk else "-"

    def get_urls(self):
        make_primary = self.admin_site.admin_view(self.make_primary_view)
        return [
            path("<path:object_id>/make-primary/", make_primary, name="modelhub_route_make_primary"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The page starts with the chain now: each entry's state, prices, live figures
        and place in the order tried, with a "Make primary" button each."""
        route = self.get_object(request, object_id)
        extra = {}
        if route is not None:
            can_change = self.has_change_permission(request, route)
            extra = {
                "chain_now": figures.chains(figures.routes_with_chains(route.name))[0],
                "make_primary_url": reverse("admin:modelhub_route_make_primary", args=[route.pk]) if can_change else "",
                "live_minutes": window_seconds() // 60,
            }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def make_primary_view(self, request, object_id):
        """The route page's buttons: put the chosen model of the chain first (audited)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        route = self.get_object(request, object_id)
        if route is None or not self.has_change_permission(request, route):
            raise PermissionDenied
        chosen = request.POST.get("model", "")
        entry = route.entries.select_related("model").filter(model_id=chosen).first() if chosen.isdigit() else None
        if entry is None:
            self.message_user(request, "Pick a model of this route's chain.", messages.ERROR)
        else:
            with transaction.atomic():
                services.route_set_primary(route=route, model=entry.model, by=admin_actor(request))
            self.message_user(request, f"{entry.model.model_id} is now primary of {route.name}.", messages.SUCCESS)
        return redirect(reverse("admin:modelhub_route_change", args=[route.pk]))

    def save_model(self, request, obj, form, change):
        obj._audit_before = {"route": audit.state_in_db(obj), "chain": audit.chain_of(obj)} if change else None
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        services.route_entries_renumber(route=form.instance)
        route, before = form.instance, getattr(form.instance, "_audit_before", None)
        after = {"route": audit.state_of(route), "chain": audit.chain_of(route)}
        if before is not None:
            before["route"], after["route"] = audit.changed_only(before["route"], after["route"])
        audit.change_record(
            actor=admin_actor(request),
            action="change" if change else "add",
            target_type="route",
            target=route.name,
            route=route.name,
            before=before,
            after=after,
        )

    def delete_model(self, request, obj):
        audit.change_record(
            actor=admin_actor(request),
            action="delete",
            target_type="route",
            target=obj.name,
            route=obj.name,
            before={"route": audit.state_of(obj), "chain": audit.chain_of(obj)},
        )
        super().delete_model(request, obj)

    @admin.action(description="Restore the previous chain", permissions=["change"])
    def restore_previous_chain(self, request, queryset):
        restore_chains(self, request, [route.name for route in queryset])

    @admin.action(description="Calibrate the complexity threshold now", permissions=["change"])
    def calibrate(self, request, queryset):
        for route in queryset:
            result = calibrate_route(route, actor=admin_actor(request))
            level = messages.SUCCESS if result.changed else messages.WARNING
            self.message_user(request, f"{route.name}: {result.reason}", level)


@admin.register(RouteEntry)
class RouteEntryAdmin(admin.ModelAdmin):
    list_display = ("route", "position", "model", "provider", "weight", "enabled")
    list_display_links = ("model",)
    list_filter = ("route", "enabled")
    list_select_related = ("route", "model__provider")
    ordering = ("route__name", "position", "id")
    search_fields = ("route__name", "model__model_id")
    autocomplete_fields = ("route", "model")
    actions = ("make_primary", "enable", "disable")

    @admin.display(ordering="model__provider__name")
    def provider(self, entry):
        return entry.model.provider

    def save_model(self, request, obj, form, change):
        with audit.chain_change(
            route=obj.route,
            actor=admin_actor(request),
            action="change_entry" if change else "add_entry",
            target=obj.model.model_id,
        ):
            super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        with audit.chain_change(
            route=obj.route, actor=admin_actor(request), action="delete_entry", target=obj.model.model_id
        ):
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for entry in selectors.route_entries_with_models(entries=queryset):
            self.delete_model(request, entry)

    @admin.action(description="Make primary (position 0 of its route)", permissions=["change"])
    def make_primary(self, request, queryset):
        entries = list(selectors.route_entries_with_models(entries=queryset))
        clashes = [name for name, n in Counter(e.route.name for e in entries).items() if n > 1]
        if clashes:
            self.message_user(
                request, f"Select one entry per route (several for: {', '.join(clashes)}).", messages.ERROR
            )
            return
        for entry in entries:
            services.route_set_primary(route=entry.route, model=entry.model, by=admin_actor(request))
            self.message_user(
                request, f"{entry.model.model_id} is now primary of {entry.route.name}.", messages.SUCCESS
            )

    @admin.action(description="Enable selected entries", permissions=["change"])
    def enable(self, request, queryset):
        for entry in queryset:
            services.route_entry_set_enabled(entry=entry, enabled=True, by=admin_actor(request))
        self.message_user(request, f"Enabled {len(queryset)} entry(ies).", messages.SUCCESS)

    @admin.action(description="Disable selected entries", permissions=["change"])
    def disable(self, request, queryset):
        for entry in queryset:
            services.route_entry_set_enabled(entry=entry, enabled=False, by=admin_actor(request))
        self.message_user(request, f"Disabled {len(queryset)} entry(ies).", messages.SUCCESS)


# --- Health --------------------------------------------------------------------------


class HealthChangeList(ChangeList):
    """Every model in use is listed: one that never failed has no health row, and appears
    healthy (on the first page, unless the filters or the search leave it out). Each row
    carries its model's live statistics (``row.window``), read for the whole page at once."""

    result_list: Any  # the page's rows: a queryset from ChangeList, a list of them here

    def get_results(self, request):
        super().get_results(request)
        rows = list(self.result_list) + (self.never_failed() if self.page_num == 1 else [])
        found = stats_read(stats_key(row.model.provider.name, row.model.model_id) for row in rows)
        for row in rows:
            row.window = found.get(stats_key(row.model.provider.name, row.model.model_id), NO_REQUESTS)
        self.result_list = rows

    def never_failed(self) -> list[ModelHealth]:
        """Unsaved healthy rows for the models of enabled routes that have no health row."""
        if self.params.get("state__exact", "healthy") != "healthy":
            return []
        used = {m.pk for spec in selectors.routes_live().values() if spec.enabled for m in spec.full_chain}
        models = selectors.models_without_health(pks=used)
        provider = self.params.get("model__provider__id__exact", "")
        if provider:
            models = models.filter(provider_id=provider) if provider.isdigit() else models.none()
        if self.query:
            models = models.filter(model_id__icontains=self.query)
        return [ModelHealth(model=model) for model in models]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


@admin.register(ModelHealth)
class ModelHealthAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Written by the router and the probes; operators only read it, or reset it. The live
    statistics columns cover the last ``STATS_WINDOW_SECONDS`` (every process's attempts)."""

    list_display = (
        "model_link",
        "provider",
        "state_badge",
        "cooldown_until",
        "cooldown_reason",
        "consecutive_failures",
        "last_error",
        "last_success_at",
        "window_requests",
        "window_success_rate",
        "window_latency",
        "window_ttft",
        "window_cost",
    )
    list_display_links = None  # a row links its model's dashboard page instead (never-failed rows have no page here)
    list_filter = ("state", "model__provider")
    list_select_related = ("model__provider",)
    search_fields = ("model__model_id",)
    readonly_fields = ("state_badge", "success_rate_shown")
    actions = ("reset_health",)

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj):
        """None for a model that never failed: there is no row to act on."""
        return super().action_checkbox(obj) if obj.pk else ""

    @admin.display(description="model", ordering="model__model_id")
    def model_link(self, health):
        model = health.model
        url = reverse("dashboard-model", args=[model.provider.name, model.model_id])
        return format_html('<a href="{}">{}</a>', url, model.model_id)

    def has_reset_permission(self, request):
        return request.user.has_perm("modelhub.change_modelhealth")

    @admin.display(ordering="model__provider__name")
    def provider(self, health):
        return health.model.provider

    @admin.display(description="state", ordering="state")
    def state_badge(self, health):
        return health_badge(health)

    @admin.display(description="last error")
    def last_error(self, health):
        message = health.last_error_message
        if len(message) > ERROR_PREVIEW_CHARS:
            message = message[: ERROR_PREVIEW_CHARS - 1] + "…"
        return f"{health.last_error_kind}: {message}" if health.last_error_kind else message or "-"

    def get_changelist(self, request, **kwargs):
        return HealthChangeList

    def changelist_view(self, request, extra_context=None):
        minutes = window_seconds() // 60
        subtitle = f"Live statistics: the last {minutes} minutes, every process's requests"
        return super().changelist_view(request, {"subtitle": subtitle, **(extra_context or {})})

    @admin.display(description="success share of health changes")
    def success_rate_shown(self, health):
        rate = health.success_rate
        return "-" if rate is None else f"{rate:.1%}"

    @admin.display(description="requests")
    def window_requests(self, health):
        return health.window.requests

    @admin.display(description="success rate")
    def window_success_rate(self, health):
        rate = health.window.success_rate
        return "-" if rate is None else f"{rate:.1%}"

    @admin.display(description="latency p50 / p95")
    def window_latency(self, health):
        window = health.window
        return "-" if window.p50_ms is None else f"{_ms(window.p50_ms)} / {_ms(window.p95_ms)}"

    @admin.display(description="TTFT p50")
    def window_ttft(self, health):
        return _ms(health.window.ttft_p50_ms)

    @admin.display(description="cost / request")
    def window_cost(self, health):
        return usd(health.window.cost_per_request)

    @admin.action(description="Reset health (back in rotation now)", permissions=["reset"])
    def reset_health(self, request, queryset):
        count = services.health_reset(models=selectors.models_of_health_rows(rows=queryset), by=admin_actor(request))
        self.message_user(request, f"Reset health of {count} model(s).", messages.SUCCESS)


# --- API keys ------------------------------------------------------------------------
