"""The audit trail: every configuration change, who made it, and before/after."""

from django.db import models


class ConfigChange(models.Model):
    class Source(models.TextChoices):
        ADMIN = "admin", "Admin"
        API = "api", "Admin API"
        ENV = "env", "Environment reload"
        SYSTEM = "system", "System"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, blank=True, help_text="Username or API key name.")
    source = models.CharField(max_length=16, choices=Source.choices)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target = models.CharField(max_length=255, blank=True)
    route = models.CharField(max_length=64, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor or self.source} {self.action} {self.target}"
