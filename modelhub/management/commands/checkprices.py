from django.core.management.base import BaseCommand

from modelhub.prices import database_version, prices_check


class Command(BaseCommand):
    help = (
        "Compare every catalog model's stored prices with the bundled genai-prices database (offline) and "
        "record the differences and the models with no known price for an operator to accept or dismiss in admin."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--apply",
            action="store_true",
            help="Apply every difference at once (as MODELHUB_PRICES_AUTO_APPLY does), audited.",
        )

    def handle(self, *args, apply=False, **options):
        report = prices_check(auto_apply=True if apply else None)
        for label, names in (
            ("differ (pending)", report.pending),
            ("applied", report.applied),
            ("no known price", report.unknown),
        ):
            for name in names:
                self.stdout.write(f"{label}: {name}")
        self.stdout.write(f"{database_version()}: {report.summary()}")
