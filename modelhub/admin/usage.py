"""API keys and the usage ledger."""

from __future__ import annotations

import re
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

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

REQUEST_ID = re.compile(r"[0-9a-f]{32}")
REQUEST_ID_START = re.compile(r"[0-9a-f]{8,31}")  # the start the list shows


def _narrowed(cl) -> bool:
    """A filter, a search or a date picked: the list's rows are a bounded part of the ledger."""
    return bool(cl.has_active_filters or cl.query or any(k.startswith("created_at__") for k in cl.params))


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The ledger is history: readable, never edited here. The list puts outcome and cost
    first and fits a 1440 px screen beside admin's sidebar and the filters (tokens are on
    a row's page); once narrowed, it shows the totals of the rows it is narrowed to. A
    row's page shows how its request was routed."""

    list_display = (
        "time",
        "outcome_shown",
        "cost",
        "route",
        "model",
        "attempt_shown",
        "latency",
        "request_link",
    )
    list_filter = ("outcome", "provider", "route", "is_fallback", "is_probe")
    date_hierarchy = "created_at"
    search_fields = ("=request_id", "model", "route")
    show_full_result_count = False  # no COUNT(*) over the whole ledger on each page
    readonly_fields = ("cost", "routing_shown", "attempts_of_request")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("created_at", "request_id"),
                    "attempts_of_request",
                    ("route", "provider", "model"),
                    ("attempt", "outcome", "is_fallback"),
                    "error_message",
                    "api_key",
                )
            },
        ),
        ("Figures", {"fields": (("cost", "input_tokens", "output_tokens"), ("latency_ms", "ttft_ms", "stream"))}),
        (
            "Routing",
            {"fields": ("routing_shown", ("strategy", "tier", "category", "score", "arm"), "counterfactual_cost_usd")},
        ),
    )

    def get_search_results(self, request, queryset, search_term):
        """A request id (or its start, as the list shows it) by the index; else as usual."""
        term = search_term.strip().lower()
        if REQUEST_ID.fullmatch(term):
            return queryset.filter(request_id=term), False
        if REQUEST_ID_START.fullmatch(term):
            return queryset.filter(request_id__startswith=term), False
        return super().get_search_results(request, queryset, search_term)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl")  # absent when it redirects
        if cl is not None:
            totals = selectors.ledger_totals(rows=cl.queryset) if _narrowed(cl) else None
            if totals is not None:
                totals["cost"] = usd(totals["cost_usd"])
            response.context_data.update(ledger_totals=totals, today=selectors.today())
        return response

    @admin.display(description="time (UTC)", ordering="created_at")
    def time(self, record):
        return format_html(
            '<span title="{}">{}</span>', moment(record.created_at), f"{record.created_at:%m-%d %H:%M:%S}"
        )

    @admin.display(description="outcome", ordering="outcome")
    def outcome_shown(self, record):
        kind = "ok" if record.outcome == "ok" else "failed"
        return format_html(
            '<span class="outcome outcome-{}" title="{}">{}</span>', kind, record.error_message, record.outcome
        )

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, record):
        return usd(record.cost_usd)

    @admin.display(description="attempt", ordering="attempt")
    def attempt_shown(self, record):
        return f"{record.attempt} ↪" if record.is_fallback else str(record.attempt)

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, record):
        return f"{record.latency_ms} ms"

    @admin.display(description="request")
    def request_link(self, record):
        """The start of the request id, linking to all the request's attempts."""
        return format_html(
            '<a href="?q={}" title="{}">{}</a>', record.request_id, record.request_id, record.request_id[:12]
        )

    @admin.display(description="all attempts")
    def attempts_of_request(self, record):
        url = reverse("admin:modelhub_usagerecord_changelist")
        return format_html(
            '<a href="{}?q={}">every attempt of request {}</a>', url, record.request_id, record.request_id
        )

    @admin.display(description="routing explanation")
    def routing_shown(self, record):
        """The ledger's compact explanation: override, models passed over and why, the route
        a complexity route chose; beside it the strategy, tier and arm columns."""
        return render_to_string("modelhub/includes/routing_compact.html", {"routing": record.routing or {}})
