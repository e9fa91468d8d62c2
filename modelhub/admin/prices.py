"""Prices: what the price check found (``modelhub.prices``), read-only, with the operator's
two decisions as actions (accept: the model's prices change, audited; dismiss), and the
"Check prices now" action for AI models."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin, messages
from django.utils.html import format_html

from .. import prices
from ..models.prices import PriceCheck
from .audit import admin_actor
from .readonly import ReadOnlyAdminMixin

STATUS_COLOURS = {"pending": "#b36b00", "applied": "#1e7e34", "dismissed": "#6c757d"}


def usd(value: Decimal | None) -> str:
    """A price per 1M tokens as the provider's page writes it: $0.8, $15."""
    return "-" if value is None else f"${value.normalize():f}"


@admin.action(description="Check prices now (against genai-prices)", permissions=["change"])
def check_prices_now(modeladmin, request, queryset):
    """Compare the selected models with the price database; differences wait in Price checks
    (or are applied at once when MODELHUB_PRICES_AUTO_APPLY is set)."""
    report = prices.prices_check(models=queryset, actor=admin_actor(request))
    level = messages.WARNING if report.pending or report.unknown else messages.SUCCESS
    modeladmin.message_user(request, f"Prices ({prices.database_version()}): {report.summary()}.", level)
    for label, names in (("Differ", report.pending), ("Applied", report.applied), ("No known price", report.unknown)):
        if names:
            modeladmin.message_user(request, f"{label}: {', '.join(names)}", level)


@admin.register(PriceCheck)
class PriceCheckAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "model",
        "provider",
        "kind",
        "status_badge",
        "stored",
        "found",
        "note",
        "source",
        "checked_at",
        "resolved_by",
    )
    list_filter = ("status", "kind", "model__provider")
    list_select_related = ("model__provider",)
    search_fields = ("model__model_id",)
    actions = ("accept", "dismiss")

    def has_decide_permission(self, request):
        """Accepting changes a model's prices: the same permission as editing a model."""
        return request.user.has_perm("modelhub.change_aimodel")

    @admin.display(description="provider", ordering="model__provider__name")
    def provider(self, check):
        return check.model.provider.name

    @admin.display(description="status", ordering="status")
    def status_badge(self, check):
        return format_html(
            '<span class="price-{}" style="color:{};font-weight:bold">● {}</span>',
            check.status,
            STATUS_COLOURS[check.status],
            check.get_status_display(),
        )

    @admin.display(description="stored in / out $ per 1M")
    def stored(self, check):
        return f"{usd(check.stored_input)} / {usd(check.stored_output)}"

    @admin.display(description="found in / out $ per 1M")
    def found(self, check):
        return f"{usd(check.found_input)} / {usd(check.found_output)}" if check.found_input is not None else "-"

    @admin.action(description="Accept: set the models' prices to the found ones", permissions=["decide"])
    def accept(self, request, queryset):
        self._decide(request, queryset, prices.price_apply, "Applied")

    @admin.action(description="Dismiss: keep the stored prices", permissions=["decide"])
    def dismiss(self, request, queryset):
        self._decide(request, queryset, prices.price_dismiss, "Dismissed")

    def _decide(self, request, queryset, decide, done: str) -> None:
        actor, names = admin_actor(request), []
        for check in queryset.select_related("model"):
            try:
                decide(check, actor=actor)
            except prices.PriceCheckError as exc:
                self.message_user(request, str(exc), messages.WARNING)
                continue
            names.append(str(check.model))
        if names:
            self.message_user(request, f"{done}: {', '.join(names)}.", messages.SUCCESS)
