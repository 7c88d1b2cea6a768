"""The bench servers' settings (bench.server_settings) plus the bench-only naive endpoint
(bench/naive.py). Used only by the Daphne that serves the naive baseline."""

from bench.server_settings import *  # noqa: F403

ROOT_URLCONF = "bench.naive"
