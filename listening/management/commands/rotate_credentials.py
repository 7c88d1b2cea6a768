from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from listening import audit, crypto
from listening.models import Connector


class Command(BaseCommand):
    help = (
        "Re-encrypt every connector's credentials with the newest key in CXM_CREDENTIALS_KEYS. "
        "Rotate by prepending a new key, running this, then removing the old key."
    )

    def handle(self, *args, **options):
        rotated = 0
        with transaction.atomic():
            for connector in Connector.objects.select_for_update().exclude(credentials_encrypted=""):
                try:
                    before = audit.snapshot(connector)
                    connector.credentials_encrypted = crypto.rotate(connector.credentials_encrypted)
                except crypto.CredentialsUnreadable:
                    raise CommandError(
                        f"connector {connector.pk} ({connector.slug}): credentials cannot be decrypted "
                        "with any configured key; nothing was changed"
                    ) from None
                connector.save(update_fields=["credentials_encrypted"])
                audit.record(None, "credentials re-encrypted", connector, before, audit.snapshot(connector),
                             always=True)
                rotated += 1
        self.stdout.write(f"re-encrypted credentials of {rotated} connector(s) with the newest key")
