import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("responses", "0010_fill_sla_near_and_pending_since"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="SavedView",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=60)),
                ("query", models.CharField(blank=True, default="", max_length=500)),
                ("filters", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("owner", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                            related_name="cxm_saved_views", to=settings.AUTH_USER_MODEL)),
                ("team", models.ForeignKey(blank=True, help_text="Shared with this team's members; empty: only the "
                                           "owner sees it.", null=True, on_delete=django.db.models.deletion.CASCADE,
                                           related_name="saved_views", to="responses.team")),
            ],
            options={
                "ordering": ["name", "id"],
                "constraints": [models.UniqueConstraint(fields=("owner", "name"), name="saved_view_name_per_owner")],
            },
        ),
    ]
