"""django-celery-beat's admins, registered again so that an operator's edits of periodic
tasks and their schedules leave a ConfigChange.

Admin subclasses rather than save signals: the beat scheduler saves PeriodicTask rows
itself on every run (last_run_at, total_run_count), a signal has no request to name the
operator, and the enable / disable / toggle actions are queryset updates, which send none."""

from __future__ import annotations

from django.contrib import admin
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from .. import audit
from .audit import AuditedAdmin, admin_actor


def _audited_update(modeladmin, request, queryset, update) -> None:
    """Run one of beat's bulk actions, then record each task it switched on or off."""
    tasks = list(queryset)
    before = {task.pk: audit.state_of(task) for task in tasks}
    update(modeladmin, request, queryset)
    for task in PeriodicTask.objects.filter(pk__in=before):
        old, new = audit.changed_only(before[task.pk], audit.state_of(task))
        if new:
            audit.change_record(
                actor=admin_actor(request),
                action="enable" if new.get("enabled") else "disable",
                target_type="periodictask",
                target=task.name,
                before=old,
                after=new,
            )


class PeriodicTaskAdmin(AuditedAdmin, beat_admin.PeriodicTaskAdmin):
    @admin.action(description="Enable selected tasks")
    def enable_tasks(self, request, queryset):
        _audited_update(self, request, queryset, beat_admin.PeriodicTaskAdmin.enable_tasks)

    @admin.action(description="Disable selected tasks")
    def disable_tasks(self, request, queryset):
        _audited_update(self, request, queryset, beat_admin.PeriodicTaskAdmin.disable_tasks)

    @admin.action(description="Toggle activity of selected tasks")
    def toggle_tasks(self, request, queryset):
        _audited_update(self, request, queryset, beat_admin.PeriodicTaskAdmin.toggle_tasks)


class IntervalScheduleAdmin(AuditedAdmin, beat_admin.IntervalScheduleAdmin):
    pass


class CrontabScheduleAdmin(AuditedAdmin, beat_admin.CrontabScheduleAdmin):
    pass


class SolarScheduleAdmin(AuditedAdmin, beat_admin.SolarScheduleAdmin):
    pass


class ClockedScheduleAdmin(AuditedAdmin, beat_admin.ClockedScheduleAdmin):
    pass


for _model, _admin in (
    (PeriodicTask, PeriodicTaskAdmin),
    (IntervalSchedule, IntervalScheduleAdmin),
    (CrontabSchedule, CrontabScheduleAdmin),
    (SolarSchedule, SolarScheduleAdmin),
    (ClockedSchedule, ClockedScheduleAdmin),
):
    admin.site.unregister(_model)
    admin.site.register(_model, _admin)
