from django.core.management.base import BaseCommand

from modelhub.probes import probes_run

COLUMNS = ("provider", "model", "outcome", "latency", "health", "detail")


class Command(BaseCommand):
    help = (
        "Probe every enabled model that an enabled route uses, once, and print the results. "
        "Probes also models a scheduled round probed recently (pass --respect-lock to skip them)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--respect-lock",
            action="store_true",
            help="Skip models another worker probed in the last PROBE_LOCK_SECONDS.",
        )

    def handle(self, *args, respect_lock=False, **options):
        results = probes_run(force=not respect_lock)
        rows = [
            (
                r.model.provider.name,
                r.model.model_id,
                r.outcome,
                f"{r.latency_ms} ms" if r.outcome != "skipped" else "-",
                r.state or "-",
                r.detail[:80],
            )
            for r in results
        ]
        self.stdout.write(table([COLUMNS, *rows]))
        failed = sum(1 for r in results if r.outcome not in ("ok", "skipped"))
        self.stdout.write(
            f"{len(results)} model(s): {sum(r.outcome == 'ok' for r in results)} ok, "
            f"{failed} failed, {sum(r.outcome == 'skipped' for r in results)} skipped"
        )


def table(rows: list[tuple]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
