"""The embedded default in one command: database, demo admin and key, the simulated
upstream, the scheduled work (probes, rollups, alerts: ``pam.celery.EmbeddedBeat``, in this
process, without a broker) and the ASGI server.

The demo key survives restarts (its secret is kept in a file beside the database, readable
by its owner only): a script that uses it keeps working. The simulated upstream dies with
this process however it ends (uvicorn re-raises SIGTERM after its graceful shutdown, so a
``finally`` here never runs on a SIGTERM): on Linux the kernel ends it (PR_SET_PDEATHSIG)."""

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from modelhub.models import ApiKey
from modelhub.services import api_key_create, api_key_hash
from pam.celery import EmbeddedBeat

SIM_KEY = "sim-key-not-secret"
KEY_VARIABLES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GROQ_API_KEY")


class Command(BaseCommand):
    help = "Migrate, create a demo admin and API key, start the simulated upstream, serve the hub."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--sim-port", type=int, default=8900)
        parser.add_argument(
            "--no-simulator", action="store_true", help="Call the real providers with the keys in the environment."
        )
        parser.add_argument(
            "--no-scheduler", action="store_true", help="Run no scheduled tasks here (a Celery worker and beat do)."
        )

    def handle(self, *args, host, port, sim_port, no_simulator, no_scheduler, **options):
        call_command("migrate", interactive=False, verbosity=0)
        password = self._demo_admin()
        secret = self._demo_key()
        simulator = None if no_simulator else self._simulator(sim_port)
        beat = None if no_scheduler or not settings.CELERY_TASK_ALWAYS_EAGER else EmbeddedBeat().start()
        self._banner(host, port, password, secret, simulator is not None, beat is not None)
        self.stdout.flush()  # before the server runs: a log or a pipe sees it at once
        try:
            import uvicorn

            uvicorn.run(
                "pam.asgi:application", host=host, port=port, log_level="warning", access_log=False, lifespan="on"
            )  # lifespan: a bad environment override stops start-up (pam/asgi.py)
        finally:
            if beat is not None:
                beat.stop()
            if simulator is not None:
                simulator.terminate()

    def _demo_admin(self):
        users = get_user_model().objects
        if users.filter(username="admin").exists():
            return None
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        return password

    def _demo_key(self):
        """The demo key of an earlier start while it is still active; else a new one (the
        demo keys before it revoked), its secret kept for the next start."""
        path = demo_key_path()
        secret = path.read_text().strip() if path.is_file() else ""
        if secret and ApiKey.objects.filter(name="demo", is_active=True, key_hash=api_key_hash(secret)).exists():
            return secret
        ApiKey.objects.filter(name="demo", is_active=True).update(is_active=False)
        secret = api_key_create(name="demo")[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secret + "\n")
        return secret

    def _simulator(self, sim_port):
        base = f"http://127.0.0.1:{sim_port}"
        process = subprocess.Popen(
            [sys.executable, "manage.py", "simupstream", "--port", str(sim_port)],
            cwd=settings.BASE_DIR,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/_sim/health", timeout=0.5)
                break
            except OSError:
                time.sleep(0.1)
        else:
            process.terminate()
            raise CommandError(f"The simulated upstream did not start on port {sim_port}.")
        os.environ.update(
            {
                "ANTHROPIC_BASE_URL": f"{base}/anthropic",
                "OPENAI_BASE_URL": f"{base}/openai/v1",
                "GOOGLE_GEMINI_BASE_URL": f"{base}/gemini",
                "GROQ_BASE_URL": f"{base}/compat/v1",
            }
        )
        for name in KEY_VARIABLES:
            os.environ.setdefault(name, SIM_KEY)
        return process

    def _banner(self, host, port, password, secret, simulated, scheduled):
        url = f"http://{host}:{port}"
        upstream = "the built-in simulated upstream" if simulated else "the real providers"
        login = f"admin / {password}" if password else "admin (existing password)"
        schedules = (
            "run here (admin -> Periodic tasks)" if scheduled else "not run here: start celery worker and celery beat"
        )
        self.stdout.write(f"""
PAM Model Hub on {url}  (providers: {upstream})
  admin:   {url}/admin/   login {login}
  health:  {url}/api/v1/health
  metrics: {url}/metrics  (from this machine)
  probes, rollups, alerts: {schedules}
  chat:    curl -s {url}/api/v1/pam/chat -H 'Authorization: Bearer {secret}' \\
             -H 'Content-Type: application/json' -d '{{"message": "Hello"}}'
""")


def demo_key_path() -> Path:
    """Beside the SQLite database file (a demo key belongs to its database); under var/ for
    any other database."""
    database = settings.DATABASES["default"]
    name = str(database.get("NAME") or "")
    if database["ENGINE"].endswith("sqlite3") and name not in ("", ":memory:") and not name.startswith("file:"):
        return Path(f"{name}.demo-api-key")
    return Path(settings.BASE_DIR) / "var" / "demo-api-key"


def _die_with_parent() -> None:
    """In the child, before it runs: the kernel sends it SIGTERM when this process dies
    (Linux; elsewhere the ``finally`` of a normal exit stops it)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (AttributeError, OSError):
        pass
