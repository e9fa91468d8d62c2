"""The embedded default in one command: database, demo admin and key, the simulated
upstream, and the ASGI server."""

import os
import secrets
import subprocess
import sys
import time
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from modelhub.models import ApiKey
from modelhub.services import api_key_create

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

    def handle(self, *args, host, port, sim_port, no_simulator, **options):
        call_command("migrate", interactive=False, verbosity=0)
        password = self._demo_admin()
        secret = self._demo_key()
        simulator = None if no_simulator else self._simulator(sim_port)
        self._banner(host, port, password, secret, simulator is not None)
        try:
            import uvicorn

            uvicorn.run(
                "pam.asgi:application", host=host, port=port, log_level="warning", access_log=False, lifespan="on"
            )  # lifespan: a bad environment override stops start-up (pam/asgi.py)
        finally:
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
        ApiKey.objects.filter(name="demo", is_active=True).update(is_active=False)
        return api_key_create(name="demo")[1]

    def _simulator(self, sim_port):
        base = f"http://127.0.0.1:{sim_port}"
        process = subprocess.Popen(
            [sys.executable, "manage.py", "simupstream", "--port", str(sim_port)],
            cwd=settings.BASE_DIR,
            stdout=subprocess.DEVNULL,
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

    def _banner(self, host, port, password, secret, simulated):
        url = f"http://{host}:{port}"
        upstream = "the built-in simulated upstream" if simulated else "the real providers"
        login = f"admin / {password}" if password else "admin (existing password)"
        self.stdout.write(f"""
PAM Model Hub on {url}  (providers: {upstream})
  admin:   {url}/admin/   login {login}
  health:  {url}/api/v1/health
  chat:    curl -s {url}/api/v1/pam/chat -H 'Authorization: Bearer {secret}' \\
             -H 'Content-Type: application/json' -d '{{"message": "Hello"}}'
""")
