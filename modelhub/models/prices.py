"""What the price check found: a stored price that differs from the maintained price
database, or a model the database does not know, waiting for an operator's decision."""

from django.db import models

from .registry import AIModel

_PRICE = dict(max_digits=12, decimal_places=6)


class PriceCheck(models.Model):
    class Kind(models.TextChoices):
        DIFFERENCE = "difference", "Price differs"
        UNKNOWN = "unknown", "No known price"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPLIED = "applied", "Applied"
        DISMISSED = "dismissed", "Dismissed"

    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="price_checks")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    stored_input = models.DecimalField("stored input $ / 1M", **_PRICE)
    stored_output = models.DecimalField("stored output $ / 1M", **_PRICE)
    found_input = models.DecimalField("found input $ / 1M", null=True, blank=True, **_PRICE)
    found_output = models.DecimalField("found output $ / 1M", null=True, blank=True, **_PRICE)
    source = models.CharField(
        max_length=200, blank=True, help_text="The database and the entry matched, e.g. genai-prices 0.2.3 anthropic/…"
    )
    note = models.CharField(max_length=300, blank=True, help_text="Price tiers, or why the price is unknown.")
    created_at = models.DateTimeField(auto_now_add=True)
    checked_at = models.DateTimeField(help_text="The last check that found it.")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-checked_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"], condition=models.Q(status="pending"), name="pricecheck_one_pending_per_model"
            )
        ]

    def __str__(self):
        return f"{self.model} {self.get_kind_display().lower()} ({self.status})"
