from django.apps import AppConfig


class CxmConfig(AppConfig):
    """The project wiring as an app, so that the commands spanning the apps (`poll_loop`,
    `setup_demo`, `demo_traffic`) live above them in `cxm/management/` instead of inside one of them."""

    name = "cxm"
    verbose_name = "CXM"
