"""Topic terms for the demo brands (cxm.demo), so a trial install shows matched brands,
products and competitors, and lets the demo agent read classifications."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand

from cxm.demo import BRANDS
from learning.models import Term


class Command(BaseCommand):
    help = "Create topic terms for the demo brands (idempotent)."

    def handle(self, *args, **options):
        brands = list(BRANDS)
        for index, (brand, products) in enumerate(BRANDS.items()):
            kind = Term.Kind.BRAND if index == 0 else Term.Kind.COMPETITOR
            Term.objects.get_or_create(kind=kind, name=brand, defaults={"synonyms": [brand.replace(" ", "")]})
            for product in products:
                Term.objects.get_or_create(kind=Term.Kind.PRODUCT, name=product)
        agent = get_user_model().objects.filter(username="agent").first()
        if agent:
            agent.user_permissions.add(*Permission.objects.filter(content_type__app_label="learning",
                                                                  codename__startswith="view_"))
        self.stdout.write(f"Demo terms: {brands[0]} (brand), {', '.join(brands[1:])} (competitors) and products")
