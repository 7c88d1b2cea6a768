import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from listening.models import Connector
from responses.models import AgentProfile, CannedResponse, Presence, Role
from responses.teams import default_team

DEMO_CONNECTOR = {"slug": "demo-web", "name": "Demo: website, email and app reviews", "kind": "webhook"}


class Command(BaseCommand):
    help = "Create the demo admin and agent (fresh passwords, printed) and the demo webhook connector."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="use this password for every demo user instead of random ones")
        parser.add_argument("--reply-url", default="http://127.0.0.1:8001/replies",
                            help="where the demo connector sends agents' replies (demo_traffic --reply-port)")

    @transaction.atomic
    def handle(self, *args, **options):
        users = {
            "admin": self._user("admin", options["password"], superuser=True),
            "agent": self._user("agent", options["password"], superuser=False),
            "lead": self._user("lead", options["password"], superuser=False),
            "manager": self._user("manager", options["password"], superuser=False),
        }
        connector, created = Connector.objects.get_or_create(
            slug=DEMO_CONNECTOR["slug"],
            defaults={"name": DEMO_CONNECTOR["name"], "kind": DEMO_CONNECTOR["kind"], "config": {"channel": "web"}},
        )
        connector.config = {**connector.config, "callback_url": options["reply_url"]}
        if created or not connector.credentials.get("signing_secret"):
            connector.credentials = {"signing_secret": secrets.token_urlsafe(32)}
        connector.save()
        self._team(connector)
        self.stdout.write("Demo users (passwords are new on every run):")
        for name, password in users.items():
            self.stdout.write(f"  {name:6} / {password}")
        self.stdout.write(f"Demo connector: /hooks/{connector.slug}/ (generic signed webhook)")

    def _team(self, connector: Connector) -> None:
        """The demo care team owns the demo connector: an agent, a supervisor ("lead") and a brand
        manager, with a welcome canned response."""
        team = default_team()
        team.connectors.add(connector)
        User = get_user_model()
        for username, role, presence in (("agent", Role.AGENT, Presence.AVAILABLE),
                                         ("lead", Role.SUPERVISOR, Presence.AVAILABLE),
                                         ("manager", Role.BRAND_MANAGER, Presence.OFFLINE)):
            user = User.objects.get(username=username)
            AgentProfile.objects.update_or_create(user=user, defaults={"role": role, "presence": presence,
                                                                       "capacity": 20})  # demo traffic is brisk
            team.members.add(user)
        CannedResponse.objects.get_or_create(
            team=team, shortcut="sorry",
            defaults={"title": "Sorry + looking into it",
                      "text": "Hi {customer_first_name}, I'm sorry about this. I'm {agent_first_name} from "
                              "{brand} and I'm looking into it now."})
        CannedResponse.objects.get_or_create(
            team=team, shortcut="thanks",
            defaults={"title": "Thanks for the kind words",
                      "text": "Thank you so much, {customer_first_name}! We've shared this with the team."})

    def _user(self, username: str, password: str | None, *, superuser: bool) -> str:
        password = password or secrets.token_urlsafe(9)
        User = get_user_model()
        user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = superuser  # the console is for everyone else; the Django admin for admins
        user.is_superuser = superuser
        user.set_password(password)
        user.save()
        return password
