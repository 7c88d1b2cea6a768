"""Settings for the bench's Daphne processes (and its in-process work): the product's settings,
with the database connection policy picked by BENCH_DB_CONN to compare deployments.

- shipped (default): cxm.settings as is: CONN_MAX_AGE=0 and psycopg's bounded pool.
- close: CONN_MAX_AGE=0 without a pool: a new PostgreSQL connection (a forked backend) for
  every request.
- persistent: CONN_MAX_AGE=60 without a pool, the setting before the pool. Django's ASGI handler
  runs each request's sync code in a fresh thread (one ThreadSensitiveContext per request), so
  every finished thread leaves its connection behind until garbage collection: under load
  PostgreSQL refuses new clients ("too many clients already").
"""

import os

from cxm.settings import *  # noqa: F403

_MODE = os.environ.get("BENCH_DB_CONN", "shipped")
if _MODE not in ("shipped", "close", "persistent"):
    raise ValueError(f"BENCH_DB_CONN must be shipped, close or persistent, not {_MODE!r}")
if _MODE in ("close", "persistent"):
    DATABASES["default"].get("OPTIONS", {}).pop("pool", None)  # noqa: F405
    DATABASES["default"]["CONN_MAX_AGE"] = 60 if _MODE == "persistent" else 0  # noqa: F405

# Server-side parameter binding (psycopg sends values apart from the SQL instead of quoting them
# into it on the client): BENCH_DB_SERVER_BINDING=1. It made no measurable difference here.
if os.environ.get("BENCH_DB_SERVER_BINDING") == "1":
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True  # noqa: F405
