from django.db import models

from .registry import AIModel


class ModelHealth(models.Model):
    class State(models.TextChoices):
        HEALTHY = "healthy", "Healthy"
        COOLING_DOWN = "cooling_down", "Cooling down"
        HALF_OPEN = "half_open", "Half open"

    model = models.OneToOneField(AIModel, on_delete=models.CASCADE, related_name="health")
    state = models.CharField(max_length=16, choices=State.choices, default=State.HEALTHY)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error_kind = models.CharField(max_length=32, blank=True)
    last_error_message = models.TextField(blank=True)
    cooldown_reason = models.CharField(
        max_length=300, blank=True, help_text="The breaker's last decision: what took the model out, for how long, why."
    )
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_probe_at = models.DateTimeField(null=True, blank=True)
    success_count = models.PositiveBigIntegerField(default=0)
    failure_count = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "model health"

    def __str__(self):
        return f"{self.model.model_id}: {self.state}"

    @property
    def success_rate(self):
        total = self.success_count + self.failure_count
        return None if total == 0 else self.success_count / total
