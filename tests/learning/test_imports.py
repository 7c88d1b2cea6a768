"""A web process never imports the model stack: only workers and commands load it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, django
django.setup()
import cxm.asgi, cxm.urls, learning.admin, learning.tasks, learning.receivers, listening.views
from django.test import Client
Client().get("/healthz")
heavy = sorted(m for m in ("torch", "transformers", "spacy", "sklearn") if m in sys.modules)
print(",".join(heavy) or "clean")
"""


def test_web_process_does_not_import_the_model_stack():
    env = {"DJANGO_SETTINGS_MODULE": "cxm.settings_test", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "clean"
