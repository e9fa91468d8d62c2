"""Cost rollups and alerts: DailyCost (read-only), alert rules (editable), alerts fired."""

from __future__ import annotations

from django.contrib import admin, messages

from .. import alerts, costs
from ..models import Alert, AlertRule, DailyCost, RollupDay
from .audit import AuditedAdmin
from .readonly import ReadOnlyAdminMixin
from .registry import usd


@admin.register(DailyCost)
class DailyCostAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "day",
        "route",
        "provider",
        "model",
        "api_key",
        "is_probe",
        "requests",
        "attempts",
        "failures",
        "fallbacks",
        "input_tokens",
        "output_tokens",
        "cost",
    )
    list_filter = ("day", "is_probe", "provider", "route")
    list_select_related = ("api_key",)
    date_hierarchy = "day"
    search_fields = ("model", "route")
    actions = ("rollup_now",)

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, row):
        return usd(row.cost_usd)

    @admin.action(description="Roll up the ledger now (every day not final yet)")
    def rollup_now(self, request, queryset):
        written = costs.costs_rollup()
        self.message_user(request, f"Rolled up {len(written)} day(s).", messages.SUCCESS)


@admin.register(RollupDay)
class RollupDayAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("day", "rolled_up_at", "ledger_rows", "pruned_at")


@admin.register(AlertRule)
class AlertRuleAdmin(AuditedAdmin):
    """Edits are recorded with the webhook URL masked (its path may carry a token)."""

    list_display = ("name", "metric", "threshold", "scope", "target", "min_requests", "enabled")
    list_editable = ("enabled",)
    list_filter = ("metric", "enabled")
    fields = ("name", "metric", "threshold", "scope", "target", "min_requests", "emails", "webhook_url", "enabled")
    actions = ("evaluate_now",)

    @admin.action(description="Evaluate every enabled rule now", permissions=["change"])
    def evaluate_now(self, request, queryset):
        fired = alerts.alerts_evaluate()
        self.message_user(request, f"{len(fired)} new alert(s).", messages.SUCCESS)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "period", "rule", "message", "emailed", "webhook_status")
    list_filter = ("rule", "period")
    list_select_related = ("rule",)
    date_hierarchy = "period"
