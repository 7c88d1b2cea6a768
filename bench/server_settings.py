"""Settings for the bench's Daphne processes: the product's settings, with the database
connection policy picked by BENCH_DB_CONN, because the shipped one does not survive ASGI.

- shipped: cxm.settings as is (CONN_MAX_AGE=60). Django's ASGI handler runs every request's sync
  code in a fresh thread (one ThreadSensitiveContext per request), so a persistent connection is
  left behind in each finished thread until garbage collection: under load PostgreSQL runs out of
  connections ("too many clients already").
- close: CONN_MAX_AGE=0, Django's documented setting under ASGI: connect and close per request.
- pool: CONN_MAX_AGE=0 and psycopg's connection pool (Django >= 5.1, needs psycopg_pool), sized
  by BENCH_DB_POOL_MAX per server process.
"""

import os

from cxm.settings import *  # noqa: F403

_MODE = os.environ.get("BENCH_DB_CONN", "shipped")
if _MODE not in ("shipped", "close", "pool"):
    raise ValueError(f"BENCH_DB_CONN must be shipped, close or pool, not {_MODE!r}")
if _MODE in ("close", "pool"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
if _MODE == "pool":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {  # noqa: F405
        "min_size": 2,
        "max_size": int(os.environ.get("BENCH_DB_POOL_MAX", "8")),
        "timeout": 10,
    }

# Server-side parameter binding (psycopg sends values apart from the SQL instead of quoting them
# into it on the client, and can use prepared statements): BENCH_DB_SERVER_BINDING=1.
if os.environ.get("BENCH_DB_SERVER_BINDING") == "1":
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True  # noqa: F405
