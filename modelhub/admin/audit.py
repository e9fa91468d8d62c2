"""The audit trail of configuration changes (read-only), and the mixin that records the
console's own saves and deletes into it."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from .. import audit, selectors, services
from ..models import ConfigChange
from ..pages.display import change_html, change_summary
from .readonly import ReadOnlyAdminMixin


def admin_actor(request) -> audit.Actor:
    return audit.actor_of(request, audit.Source.ADMIN)


class AuditedAdmin(admin.ModelAdmin):
    """Saves and deletes made in this admin leave a ConfigChange with the fields that changed."""

    def save_model(self, request, obj, form, change):
        with audit.instance_change(instance=obj, actor=admin_actor(request), action="change" if change else "add"):
            super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        audit.change_record(
            actor=admin_actor(request),
            action="delete",
            target_type=obj._meta.model_name,
            target=str(obj),
            before=audit.state_of(obj),
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            audit.change_record(
                actor=admin_actor(request),
                action="delete",
                target_type=obj._meta.model_name,
                target=str(obj),
                before=audit.state_of(obj),
            )
        super().delete_queryset(request, queryset)


def restore_chains(modeladmin, request, route_names) -> None:
    """Restore each route's previous chain, with one message per route."""
    for route in selectors.routes_by_names(names=route_names):
        try:
            chain = services.route_chain_restore(route=route, by=admin_actor(request))
        except services.ConfigError as exc:
            modeladmin.message_user(request, str(exc), messages.ERROR)
            continue
        shown = " → ".join(i["model"].split("/", 1)[1] + ("" if i["enabled"] else " (disabled)") for i in chain)
        modeladmin.message_user(
            request, f"Restored the previous chain of {route.name}: {shown or '(empty)'}.", messages.SUCCESS
        )


@admin.register(ConfigChange)
class ConfigChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each change as a diff: a chain's models with their old and new places, the fields
    before and after; the raw record stays on the change's page, folded."""

    list_display = ("created_at", "actor", "action", "target", "route", "change")
    list_filter = ("source", "action", "target_type", "route")
    search_fields = ("actor", "target", "route", "action")
    date_hierarchy = "created_at"
    readonly_fields = (
        "created_at",
        "actor",
        "source",
        "action",
        "target_type",
        "target",
        "route",
        "diff",
        "recorded",
    )
    fields = readonly_fields
    actions = ("restore_previous_chain",)

    def has_restore_permission(self, request):
        return request.user.has_perm("modelhub.change_route")

    @admin.display(description="change")
    def change(self, change):
        return change_summary(change.before, change.after)

    @admin.display(description="change")
    def diff(self, change):
        return change_html(change.before, change.after)

    @admin.display(description="as recorded")
    def recorded(self, change):
        record = json.dumps({"before": change.before, "after": change.after}, indent=2, sort_keys=True)
        return format_html("<details><summary>before and after (JSON)</summary><pre>{}</pre></details>", record)

    @admin.action(description="Restore the previous chain of the selected changes' routes", permissions=["restore"])
    def restore_previous_chain(self, request, queryset):
        restore_chains(self, request, [c.route for c in queryset if c.route])
