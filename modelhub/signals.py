"""Any change to the routing configuration, from admin, API, shell or migration, bumps the
config version; any change to a model's stored health bumps the health version, which makes
workers reload only the health rows. Bumped at once (so this connection's next read sees
it) and, inside a transaction, again after commit (so no other worker keeps what it read
before the commit)."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import AIModel, ApiKey, ModelHealth, Provider, Route, RouteEntry
from .routing.version import config_version_bump, health_version_bump, version_bump_on_commit

CONFIG_MODELS = (Provider, AIModel, Route, RouteEntry, ApiKey)


@receiver(post_save)
@receiver(post_delete)
def _config_changed(sender, **kwargs):
    if kwargs.get("raw"):
        return
    if sender in CONFIG_MODELS:
        version_bump_on_commit(config_version_bump)
    elif sender is ModelHealth:
        version_bump_on_commit(health_version_bump)
