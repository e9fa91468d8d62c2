"""Rollouts in the console: start one (also from a discovered candidate: the AI models'
"Start a shadow rollout" action opens the form with it), change its settings while it runs,
and pause, resume, advance, roll back or promote it. Every change goes through
``modelhub.rollouts``: audited, and obeyed by every worker on its next request. A rollout is
history once it ends: read-only, never deleted."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from .. import rollouts, services
from ..models import Rollout
from .audit import admin_actor

Phase = Rollout.Phase
PHASE_COLOURS = {
    Phase.SHADOW: "#6c757d",
    Phase.CANARY: "#b36b00",
    Phase.PROMOTED: "#1e7e34",
    Phase.ROLLED_BACK: "#c82333",
    Phase.PAUSED: "#17a2b8",
}
STEPS = ("step_weights", "min_requests", "max_error_rate", "max_latency_ratio", "max_cost_ratio")
SHADOW = ("shadow_percent", "shadow_budget_usd")
SHOWN = ("step", "weight", "shadow_spent_usd", "shadow_requests", "step_started_at", "reason")
ENDED = ("created_by", "created_at", "ended_at")


@admin.action(description="Start a shadow rollout (pick the route in the form)")
def start_shadow_rollout(modeladmin, request, queryset):
    """Open the rollout form with the one selected model as its candidate."""
    if queryset.count() != 1:
        modeladmin.message_user(request, "Select one model: a rollout has one candidate.", messages.ERROR)
        return None
    url = reverse("admin:modelhub_rollout_add")
    return HttpResponseRedirect(f"{url}?candidate={queryset.get().pk}")


class RolloutForm(forms.ModelForm):
    class Meta:
        model = Rollout
        fields = ("route", "candidate", "phase", *rollouts.EDITABLE)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "phase" in self.fields:  # only when starting one: shadow or straight to canary
            self.fields["phase"].choices = [(p, Phase(p).label) for p in (Phase.SHADOW, Phase.CANARY)]
            self.fields["candidate"].help_text = "A disabled model (discovery adds them so) is enabled as it starts."

    def clean(self):
        data = super().clean()
        route, candidate = data.get("route"), data.get("candidate")
        if self.instance.pk is None and route is not None and candidate is not None:
            try:
                rollouts.rollout_start_check(route=route, candidate=candidate, phase=data.get("phase", ""))
            except services.ConfigError as exc:
                raise ValidationError(str(exc)) from None
        return data

    def _get_validation_exclusions(self):
        """The route's one active rollout is checked in clean(), in words an operator reads,
        not again as the bare constraint (it reads the phase)."""
        return super()._get_validation_exclusions() | {"phase"}


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    form = RolloutForm
    list_display = ("id", "route", "candidate", "phase_badge", "weight", "step_shown", "shadow", "reason", "created_at")
    list_display_links = ("id", "route")
    list_filter = ("phase", "route")
    list_select_related = ("route", "candidate__provider")
    search_fields = ("route__name", "candidate__model_id", "reason")
    autocomplete_fields = ("route", "candidate")
    actions = ("pause", "resume", "advance", "rollback", "promote")

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fieldsets(self, request, obj=None):
        settings = ("Steps and thresholds", {"fields": STEPS})
        shadow = ("Shadow traffic", {"fields": SHADOW})
        if obj is None:
            return ((None, {"fields": ("route", "candidate", "phase")}), settings, shadow)
        now = ("Now", {"fields": ("phase_badge", "analysis", *SHOWN, *ENDED)})
        return ((None, {"fields": ("route", "candidate")}), now, settings, shadow)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        fixed = ("route", "candidate", "phase_badge", "analysis", *SHOWN, *ENDED)
        return fixed if obj.phase in Rollout.ACTIVE_PHASES else fixed + rollouts.EDITABLE

    def save_model(self, request, obj, form, change):
        by = admin_actor(request)
        if not change:
            rollouts.rollout_start(rollout=obj, by=by)
            return
        edited = {name: form.cleaned_data[name] for name in form.changed_data if name in rollouts.EDITABLE}
        try:
            rollouts.rollout_update(rollout=obj, changes=edited, by=by)
        except services.ConfigError as exc:  # it ended while the form was open
            self.message_user(request, str(exc), messages.ERROR)

    @admin.display(description="phase", ordering="phase")
    def phase_badge(self, rollout):
        return format_html(
            '<span class="rollout-{}" style="color:{};font-weight:bold">● {}</span>',
            rollout.phase,
            PHASE_COLOURS[rollout.phase],
            rollout.get_phase_display().split(" (")[0],
        )

    @admin.display(description="step")
    def step_shown(self, rollout):
        return f"{rollout.step + 1} of {len(rollout.step_weights)}" if rollout.step_started_at else "-"

    @admin.display(description="shadow spent")
    def shadow(self, rollout):
        return f"${rollout.shadow_spent_usd:.4f} of ${rollout.shadow_budget_usd:.2f} ({rollout.shadow_requests})"

    @admin.display(description="analysis now")
    def analysis(self, rollout):
        """What the analysis would decide now, on this worker's configuration."""
        spec = rollouts.rollout_spec_live(rollout)
        if spec is None:
            return "-"
        status = rollouts.rollout_status(spec)
        return f"{status.verdict.action}: {status.verdict.reason}"

    def _each(self, request, queryset, act, done: str) -> None:
        changed = 0
        for rollout in queryset.select_related("route", "candidate__provider"):
            try:
                act(rollout=rollout, by=admin_actor(request))
            except services.ConfigError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            changed += 1
        if changed:
            self.message_user(request, f"{done} {changed} rollout(s).", messages.SUCCESS)

    @admin.action(description="Pause (no canary traffic, no shadow copies)", permissions=["change"])
    def pause(self, request, queryset):
        self._each(request, queryset, rollouts.rollout_pause, "Paused")

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request, queryset):
        self._each(request, queryset, rollouts.rollout_resume, "Resumed")

    @admin.action(description="Advance to the next step now (promotes after the last)", permissions=["change"])
    def advance(self, request, queryset):
        self._each(request, queryset, rollouts.rollout_advance, "Advanced")

    @admin.action(description="Roll back now", permissions=["change"])
    def rollback(self, request, queryset):
        self._each(request, queryset, rollouts.rollout_rollback, "Rolled back")

    @admin.action(description="Promote now (the candidate becomes the route's primary)", permissions=["change"])
    def promote(self, request, queryset):
        self._each(request, queryset, rollouts.rollout_promote, "Promoted")
