from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from modelhub.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key. The key is printed once, on the last line; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--user", help="Username the key acts for (a staff user's key may call the admin API).")

    def handle(self, *args, name, user=None, **options):
        owner = None
        if user:
            owner = get_user_model().objects.filter(username=user).first()
            if owner is None:
                raise CommandError(f"No user named {user!r}.")
        key, secret = api_key_create(name=name, user=owner)
        self.stdout.write(f"Created API key {key.name!r} (prefix {key.prefix}). It is shown only now:")
        self.stdout.write(secret)
