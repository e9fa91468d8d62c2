from django.apps import AppConfig


class ModelhubConfig(AppConfig):
    name = "modelhub"
    verbose_name = "Model hub"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import (
            checks,  # noqa: F401  (a configuration the hub cannot obey stops start-up)
            signals,  # noqa: F401  (configuration changes bump the shared version)
        )
