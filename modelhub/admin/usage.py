"""API keys and the usage ledger."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from .. import selectors, services
from ..models import ApiKey, UsageRecord
from .audit import admin_actor
from .readonly import ReadOnlyAdminMixin
from .registry import usd


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """The secret exists only in the success message after adding; the table keeps a hash."""

    LIMITS = ("routes", "rpm_limit", "daily_budget_usd")

    list_display = ("name", "prefix_shown", "user", "is_active", "rpm_limit", "daily_budget_usd", "created_at")
    list_filter = ("is_active",)
    list_select_related = ("user",)
    search_fields = ("name", "prefix")
    filter_horizontal = ("routes",)
    actions = ("deactivate",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "user", *self.LIMITS)
        return ("name", "user", "is_active", *self.LIMITS, "prefix_shown", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("prefix_shown", "created_at")

    @admin.display(description="prefix", ordering="prefix")
    def prefix_shown(self, key):
        return f"{key.prefix}…"

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data.get(name) for name in ("name", "user", *self.LIMITS)}
        if change:
            services.api_key_update(
                key=obj, is_active=form.cleaned_data["is_active"], **fields, by=admin_actor(request)
            )
            return
        key, secret = services.api_key_create(**fields, by=admin_actor(request))
        obj.pk = key.pk
        obj.refresh_from_db()  # the admin goes on with its own instance: log entry, redirect
        self.message_user(
            request, f"Copy this key now: {secret} — it is stored hashed and will not be shown again.", messages.SUCCESS
        )

    def save_related(self, request, form, formsets, change):
        """Nothing: the services set the routes, inside the change they record."""

    def delete_model(self, request, obj):
        services.api_key_delete(key=obj, by=admin_actor(request))

    def delete_queryset(self, request, queryset):
        for key in queryset:
            services.api_key_delete(key=key, by=admin_actor(request))

    @admin.action(description="Deactivate selected keys", permissions=["change"])
    def deactivate(self, request, queryset):
        for key in selectors.api_keys_active(keys=queryset):
            services.api_key_set_active(key=key, active=False, by=admin_actor(request))
        self.message_user(request, "Deactivated the selected key(s).", messages.SUCCESS)


# --- Usage ---------------------------------------------------------------------------


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The ledger is history: readable, never edited here."""

    list_display = (
        "time",
        "request_id",
        "route",
        "model",
        "attempt",
        "outcome",
        "input_tokens",
        "output_tokens",
        "cost",
        "latency",
    )
    list_filter = ("outcome", "provider", "route", "is_fallback")
    date_hierarchy = "created_at"
    search_fields = ("=request_id", "model")
    readonly_fields = ("cost",)
    show_full_result_count = False  # no COUNT(*) over the whole ledger on each page

    @admin.display(description="time", ordering="created_at")
    def time(self, record):
        return timezone.localtime(record.created_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, record):
        return usd(record.cost_usd)

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, record):
        return f"{record.latency_ms} ms"
