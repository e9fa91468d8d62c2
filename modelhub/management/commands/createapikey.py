from argparse import ArgumentTypeError
from datetime import UTC, datetime
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from modelhub.audit import Actor, Source
from modelhub.selectors import routes_by_names, user_get_by_username
from modelhub.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key. The key is printed once, on the last line; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--user", help="Username the key acts for (a staff user's key may call the admin API).")
        parser.add_argument(
            "--route",
            action="append",
            dest="routes",
            default=[],
            help="A route the key may use (repeat for several; none: every route).",
        )
        parser.add_argument("--rpm-limit", type=int, help="Requests per minute.")
        parser.add_argument("--daily-budget-usd", type=Decimal, help="Spend allowed per day, in USD.")
        parser.add_argument(
            "--expires-at",
            type=moment_argument,
            help="When the key stops working: YYYY-MM-DD[THH:MM[:SS]], UTC unless an offset is given.",
        )

    def handle(
        self, *args, name, user=None, routes=(), rpm_limit=None, daily_budget_usd=None, expires_at=None, **options
    ):
        key, secret = api_key_create(
            name=name,
            user=self._owner(user),
            routes=self._routes(routes),
            rpm_limit=rpm_limit,
            daily_budget_usd=daily_budget_usd,
            expires_at=expires_at,
            by=Actor("manage.py createapikey", Source.SYSTEM),
        )
        self.stdout.write(f"Created API key {key.name!r} (prefix {key.prefix}). It is shown only now:")
        self.stdout.write(secret)

    def _owner(self, username):
        owner = user_get_by_username(username=username) if username else None
        if username and owner is None:
            raise CommandError(f"No user named {username!r}.")
        return owner

    def _routes(self, names):
        routes = list(routes_by_names(names=names))
        unknown = set(names) - {route.name for route in routes}
        if unknown:
            raise CommandError(f"No route named {', '.join(sorted(unknown))}.")
        return routes


def moment_argument(text: str) -> datetime:
    """An ISO date or date and time; one without an offset is taken as UTC."""
    try:
        moment = parse_datetime(text) or parse_datetime(f"{text}T00:00")
    except ValueError:
        moment = None
    if moment is None:
        raise ArgumentTypeError(f"not a date or date and time: {text!r}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
