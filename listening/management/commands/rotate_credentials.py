from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from listening import audit, crypto
from listening.models import Connector


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (connector credentials, OAuth tokens among them, and every other "
        "column declared with listening.crypto.encrypted_column, such as the alert webhook's secret) with the "
        "newest key in CXM_CREDENTIALS_KEYS. Rotate by prepending a new key, running this, then removing the "
        "old key."
    )

    def handle(self, *args, **options):
        counts: dict[str, int] = {}
        # One transaction: a secret no key can read leaves every row as it was.
        with transaction.atomic():
            for column in crypto.encrypted_columns():
                model = apps.get_model(column.model)
                rows = model.objects.select_for_update().exclude(**{column.field: ""})
                counts[column.model] = sum(1 for row in rows if self._rotate(row, column.field))
        summary = ", ".join(f"{n} {label}" for label, n in counts.items())
        self.stdout.write(f"re-encrypted with the newest key: {summary}")

    def _rotate(self, row, field: str) -> bool:
        before = audit.snapshot(row) if isinstance(row, Connector) else None
        try:
            setattr(row, field, crypto.rotate(getattr(row, field)))
        except crypto.CredentialsUnreadable:
            raise CommandError(
                f"{row._meta.label} {row.pk}{f' ({row.slug})' if isinstance(row, Connector) else ''}: "
                f"{field} cannot be decrypted with any configured key; nothing was changed"
            ) from None
        row.save(update_fields=[field])
        if before is not None:
            audit.record(None, "credentials re-encrypted", row, before, audit.snapshot(row), always=True)
        return True
