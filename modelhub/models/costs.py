"""Cost rollups and alerts (Celery)."""
