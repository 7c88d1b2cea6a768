import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxm.settings")

django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

# Imported after Django is set up: they load models.
from cxm.middleware import WebhookASGIHandler  # noqa: E402

# Django's ASGI handler, with webhook deliveries served on the event loop and stored by group
# commit (listening.group_commit).
django_asgi_app = WebhookASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from cxm.body_limit import BodyLimitMiddleware, install_in_daphne  # noqa: E402
from insight.routing_ws import websocket_urlpatterns as insight_ws  # noqa: E402
from responses.routing_ws import websocket_urlpatterns as console_ws  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Bodies over the limit are refused as they stream in (cxm.body_limit); Daphne is taught
        # the same limit, since it would otherwise hold a whole body in memory first.
        "http": BodyLimitMiddleware(django_asgi_app),
        # The Origin must be one of ALLOWED_HOSTS (no cross-site websocket hijacking); the session
        # cookie authenticates at connect.
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([*console_ws, *insight_ws]))),
    }
)

install_in_daphne()
