"""Any change to the routing configuration, from admin, API, shell or migration, bumps the
shared version. Bumped at once (so this connection's next read sees it) and again after
commit (so no other worker caches what was read before the commit)."""
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import AIModel, ApiKey, ModelHealth, Provider, Route, RouteEntry
from .routing.version import config_version_bump

CONFIG_MODELS = (Provider, AIModel, Route, RouteEntry, ApiKey, ModelHealth)


@receiver(post_save)
@receiver(post_delete)
def _config_changed(sender, **kwargs):
    if sender in CONFIG_MODELS and not kwargs.get("raw"):
        config_version_bump()
        transaction.on_commit(config_version_bump)
