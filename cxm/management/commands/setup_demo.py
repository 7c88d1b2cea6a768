import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from cxm.demo_history import seed_history
from listening.models import Connector
from responses.models import AgentProfile, CannedResponse, Presence, Role
from responses.teams import default_team

DEMO_CONNECTOR = {"slug": "demo-web", "name": "Demo: website, email and app reviews", "kind": "webhook"}
# The demo's people, with names: canned replies sign with them ("I'm Maria from ...").
PEOPLE = {  # username: (first name, last name, role, presence); the admin has no role, it is a superuser
    "admin": ("Ines", "Duarte", None, None),
    "agent": ("Maria", "Santos", Role.AGENT, Presence.AVAILABLE),
    "sam": ("Sam", "Okafor", Role.AGENT, Presence.AVAILABLE),
    "lead": ("Tom", "Becker", Role.SUPERVISOR, Presence.AVAILABLE),
    "manager": ("Omar", "Haddad", Role.BRAND_MANAGER, Presence.OFFLINE),
}


class Command(BaseCommand):
    help = ("Create the demo people (fresh passwords, printed), the demo webhook connector, and a few days of "
            "answered demo history so the dashboards have something to show.")

    def add_arguments(self, parser):
        parser.add_argument("--password", help="use this password for every demo user instead of random ones")
        parser.add_argument("--reply-url", default="http://127.0.0.1:8001/replies",
                            help="where the demo connector sends agents' replies (demo_traffic --reply-port)")
        parser.add_argument("--history-days", type=int, default=3,
                            help="days of past demo traffic to seed (0: none); skipped when already seeded")

    def handle(self, *args, **options):
        with transaction.atomic():
            connector, agents = self._setup(options)
        # Outside that transaction: the history commits as it goes, so that the messages it stores
        # are announced (on commit) while it still tells the classifier to leave them alone.
        if options["history_days"] > 0:
            stored = seed_history(connector, agents, days=options["history_days"])
            self.stdout.write(f"Demo history: {stored} past messages stored, classified and answered" if stored
                              else "Demo history: already there")

    def _setup(self, options) -> tuple[Connector, list]:
        users = {username: self._user(username, options["password"], superuser=role is None, names=(first, last))
                 for username, (first, last, role, _) in PEOPLE.items()}
        connector, created = Connector.objects.get_or_create(
            slug=DEMO_CONNECTOR["slug"],
            defaults={"name": DEMO_CONNECTOR["name"], "kind": DEMO_CONNECTOR["kind"], "config": {"channel": "web"}},
        )
        connector.config = {**connector.config, "callback_url": options["reply_url"]}
        if created or not connector.credentials.get("signing_secret"):
            connector.credentials = {"signing_secret": secrets.token_urlsafe(32)}
        connector.save()
        agents = self._team(connector)
        self.stdout.write("Demo users (passwords are new on every run):")
        for name, password in users.items():
            first, last, role, _ = PEOPLE[name]
            self.stdout.write(f"  {name:7} / {password}   {first} {last}, {role.label if role else 'admin'}")
        self.stdout.write(f"Demo connector: /hooks/{connector.slug}/ (generic signed webhook)")
        return connector, agents

    def _team(self, connector: Connector) -> list:
        """The demo care team owns the demo connector: two agents, a supervisor ("lead") and a
        brand manager, with a welcome canned response. Returns the agents."""
        team = default_team()
        team.connectors.add(connector)
        User = get_user_model()
        agents = []
        for username, (_, _, role, presence) in PEOPLE.items():
            if role is None:
                continue
            user = User.objects.get(username=username)
            AgentProfile.objects.update_or_create(user=user, defaults={"role": role, "presence": presence,
                                                                       "capacity": 20})
            team.members.add(user)
            if role == Role.AGENT:
                agents.append(user)
        CannedResponse.objects.get_or_create(
            team=team, shortcut="sorry",
            defaults={"title": "Sorry + looking into it",
                      "text": "Hi {customer_first_name}, I'm sorry about this. I'm {agent_first_name} from "
                              "{brand} and I'm looking into it now."})
        CannedResponse.objects.get_or_create(
            team=team, shortcut="thanks",
            defaults={"title": "Thanks for the kind words",
                      "text": "Thank you so much, {customer_first_name}! We've shared this with the team."})
        return agents

    def _user(self, username: str, password: str | None, *, superuser: bool, names: tuple[str, str]) -> str:
        password = password or secrets.token_urlsafe(9)
        User = get_user_model()
        user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.first_name, user.last_name = names
        user.is_staff = superuser  # the console is for everyone else; the Django admin for admins
        user.is_superuser = superuser
        user.set_password(password)
        user.save()
        return password
