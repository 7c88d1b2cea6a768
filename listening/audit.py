"""The audit log of connector and credential changes: who, when, what. Never a secret.

Every place that changes a connector (the admin, commands, the product's admin pages) takes a
`snapshot` before and after and calls `record`. A snapshot holds the audited fields and, for the
credentials, only a digest per key kept in memory to tell which keys changed: the log names
those keys and never stores a value or a digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction

from listening.models import AuditEvent, Connector

AUDITED_FIELDS = ("kind", "name", "slug", "enabled", "config", "poll_interval_seconds")
SYSTEM = "system"


def snapshot(connector: Connector | None) -> dict:
    if connector is None:
        return {}
    state = {name: getattr(connector, name) for name in AUDITED_FIELDS}
    try:
        secrets = connector.credentials
    except Exception:  # noqa: BLE001 -- unreadable credentials still change; the log says so
        secrets = {"(unreadable)": connector.credentials_encrypted}
    state["credentials"] = {key: hashlib.sha256(repr(value).encode()).hexdigest() for key, value in secrets.items()}
    return state


def differences(before: dict, after: dict) -> dict:
    """Field -> {"from", "to"} for the audited fields; "credentials" -> the key names that were
    added, removed or changed."""
    changes = {}
    for name in AUDITED_FIELDS:
        if before.get(name) != after.get(name):
            changes[name] = {"from": before.get(name), "to": after.get(name)}
    old, new = before.get("credentials", {}), after.get("credentials", {})
    touched = {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
    }
    if any(touched.values()):
        changes["credentials"] = {k: v for k, v in touched.items() if v}
    return changes


def record(actor, action: str, connector: Connector, before: dict, after: dict, *, ip: str | None = None,
           always: bool = False, extra: dict | None = None) -> AuditEvent | None:
    """Log a change (nothing when nothing audited changed, unless `always` or `extra` says what
    happened beyond the audited fields)."""
    changes = {**differences(before, after), **(extra or {})}
    if not changes and not always:
        return None
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=actor.get_username() if getattr(actor, "pk", None) else SYSTEM,
        action=action, connector=connector if connector.pk else None,
        connector_label=f"{connector.name} ({connector.slug})", changes=changes, ip=ip,
    )


@contextmanager
def changing(connector_id: int, actor, action: str, *, ip: str | None = None, always: bool = False
             ) -> Iterator[Connector]:
    """Change a connector under a row lock: yields it, then saves it and logs what changed."""
    with transaction.atomic():
        connector = Connector.objects.select_for_update().get(pk=connector_id)
        before = snapshot(connector)
        yield connector
        connector.save()
        record(actor, action, connector, before, snapshot(connector), ip=ip, always=always)
