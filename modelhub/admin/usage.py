"""API keys and the usage ledger."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.utils import timezone

from .. import selectors, services
from ..models import ApiKey, UsageRecord
from .audit import admin_actor
from .readonly import ReadOnlyAdminMixin
from .registry import usd

GRACE_HOURS = ((0, "0 (stops at once)"), (1, "1 hour"), (24, "24 hours"), (168, "7 days"))
DEFAULT_GRACE_HOURS = 24


class KeyActionForm(ActionForm):
    """The action bar, with the grace period the "Rotate" action gives the replaced secret."""

    grace_hours = forms.TypedChoiceField(
        label="Rotate: old secret works for",
        choices=GRACE_HOURS,
        coerce=int,
        empty_value=DEFAULT_GRACE_HOURS,
        initial=DEFAULT_GRACE_HOURS,
        required=False,
    )


def moment(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """The secret exists only in the success message after adding or rotating; the table
    keeps a hash. Last use and spend come from the ledger, one query for the whole list."""

    LIMITS = ("routes", "rpm_limit", "daily_budget_usd", "expires_at")
    USAGE = ("last_used", "spend_today", "spend_month")

    list_display = (
        "name",
        "prefix_shown",
        "user",
        "status",
        *USAGE,
        "rpm_limit",
        "daily_budget_usd",
        "expires_at",
        "created_at",
    )
    list_filter = ("is_active",)
    list_select_related = ("user",)
    search_fields = ("name", "prefix")
    filter_horizontal = ("routes",)
    actions = ("deactivate", "rotate")
    action_form = KeyActionForm

    def get_queryset(self, request):
        return selectors.api_keys_with_usage(keys=super().get_queryset(request))

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "user", *self.LIMITS)
        return ("name", "user", "is_active", *self.LIMITS, "prefix_shown", "status", *self.USAGE, "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("prefix_shown", "status", *self.USAGE, "created_at")

    @admin.display(description="prefix", ordering="prefix")
    def prefix_shown(self, key):
        return f"{key.prefix}…"

    @admin.display(description="status")
    def status(self, key):
        """Revoked, expired or active; and while a rotated-out secret still works, until when."""
        now = timezone.now()
        if not key.is_active:
            return "revoked"
        if key.expires_at is not None and key.expires_at <= now:
            return "expired"
        if key.previous_valid_until is not None and key.previous_valid_until > now:
            return f"active (old secret until {moment(key.previous_valid_until)})"
        return "active"

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, key):
        return moment(key.last_used_at) if key.last_used_at else "never"

    @admin.display(description="spend today", ordering="spend_today_usd")
    def spend_today(self, key):
        return usd(key.spend_today_usd)

    @admin.display(description="spend this month", ordering="spend_month_usd")
    def spend_month(self, key):
        return usd(key.spend_month_usd)

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

    @admin.action(description="Rotate key (new secret, shown once)", permissions=["change"])
    def rotate(self, request, queryset):
        grace = timedelta(hours=KeyActionForm.base_fields["grace_hours"].clean(request.POST.get("grace_hours")))
        for key in queryset:
            secret = services.api_key_rotate(key=key, grace=grace, by=admin_actor(request))
            self.message_user(
                request,
                f"Copy the new secret of {key.name} now: {secret} — it is stored hashed and will not be shown "
                f"again. The old secret works until {moment(key.previous_valid_until)}.",
                messages.SUCCESS,
            )


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
        return moment(record.created_at)

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, record):
        return usd(record.cost_usd)

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, record):
        return f"{record.latency_ms} ms"
