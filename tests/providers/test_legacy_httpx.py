"""The openai SDK reads the legacy ``httpx`` module out of ``sys.modules`` on every request;
a module another thread is still importing (google-genai's import, on the ASGI preload
thread) failed a request under load with "partially initialized module 'httpx' has no
attribute 'Timeout'". Once the adapter module is imported, httpx must be there whole."""

import os
import subprocess
import sys

from django.conf import settings

PROBE = """
import sys
import django
django.setup()
assert "httpx" not in sys.modules, "imported before the adapter: the probe proves nothing"
import modelhub.providers.openai  # noqa: F401
module = sys.modules.get("httpx")
assert module is not None, "the adapter did not import httpx"
assert not getattr(module.__spec__, "_initializing", False), "httpx still initializing"
print(module.Timeout.__name__)
"""


def test_the_openai_adapter_imports_legacy_httpx_whole_before_any_request():
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "pam.settings")},
        cwd=str(settings.BASE_DIR),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "Timeout"
