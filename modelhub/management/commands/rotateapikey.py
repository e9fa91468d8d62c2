from argparse import ArgumentTypeError
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from modelhub.audit import Actor, Source
from modelhub.selectors import api_keys_by_name_or_prefix
from modelhub.services import api_key_rotate

MAX_GRACE_HOURS = 24 * 365


def grace_hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not 0 <= hours <= MAX_GRACE_HOURS:  # also refuses nan
        raise ArgumentTypeError(f"a number of hours from 0 to {MAX_GRACE_HOURS}, not {text!r}")
    return hours


class Command(BaseCommand):
    help = (
        "Give an API key a new secret, printed once on the last line; the old secret keeps "
        "working for the grace period, then is refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("key", help="The key's name, or its prefix when several keys share a name.")
        parser.add_argument(
            "--grace-hours",
            type=grace_hours,
            default=24.0,
            help="How long the old secret keeps working (0: it stops at once; default 24).",
        )

    def handle(self, *args, key, grace_hours, **options):
        found = self._key(key)
        secret = api_key_rotate(
            key=found, grace=timedelta(hours=grace_hours), by=Actor("manage.py rotateapikey", Source.SYSTEM)
        )
        self.stdout.write(
            f"Rotated API key {found.name!r} (new prefix {found.prefix}); the old secret works until "
            f"{found.previous_valid_until:%Y-%m-%d %H:%M:%S %Z}. The new key is shown only now:"
        )
        self.stdout.write(secret)

    def _key(self, name):
        keys = list(api_keys_by_name_or_prefix(name=name))
        if not keys:
            raise CommandError(f"No API key named {name!r} or with that prefix.")
        if len(keys) > 1:
            prefixes = ", ".join(sorted(k.prefix for k in keys))
            raise CommandError(f"{len(keys)} keys match {name!r}; name one by its prefix: {prefixes}.")
        return keys[0]
