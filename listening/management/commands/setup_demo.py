import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from listening.models import Connector

DEMO_CONNECTOR = {"slug": "demo-web", "name": "Demo: website, email and app reviews", "kind": "webhook"}


class Command(BaseCommand):
    help = "Create the demo admin and agent (fresh passwords, printed) and the demo webhook connector."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="use this password for both users instead of random ones")

    @transaction.atomic
    def handle(self, *args, **options):
        users = {
            "admin": self._user("admin", options["password"], superuser=True),
            "agent": self._user("agent", options["password"], superuser=False),
        }
        connector, created = Connector.objects.get_or_create(
            slug=DEMO_CONNECTOR["slug"],
            defaults={"name": DEMO_CONNECTOR["name"], "kind": DEMO_CONNECTOR["kind"], "config": {"channel": "web"}},
        )
        if created or not connector.credentials.get("signing_secret"):
            connector.credentials = {"signing_secret": secrets.token_urlsafe(32)}
            connector.save()
        self.stdout.write("Demo users (passwords are new on every run):")
        for name, password in users.items():
            self.stdout.write(f"  {name:6} / {password}")
        self.stdout.write(f"Demo connector: /hooks/{connector.slug}/ (generic signed webhook)")

    def _user(self, username: str, password: str | None, *, superuser: bool) -> str:
        password = password or secrets.token_urlsafe(9)
        User = get_user_model()
        user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = True
        user.is_superuser = superuser
        user.set_password(password)
        user.save()
        if not superuser:
            # Until the console lands, agents watch arriving messages in the admin, read-only.
            user.user_permissions.set(
                Permission.objects.filter(
                    content_type__app_label="listening", codename__startswith="view_"
                )
            )
        return password
