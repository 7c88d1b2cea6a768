"""Errors of the listening domain. Web-facing ones carry their HTTP status (mapped by
cxm.middleware.DomainErrorMiddleware); provider-facing ones drive health and backoff."""

from __future__ import annotations

from cxm.exceptions import CXMError


# --- Rejections of inbound deliveries (webhooks, imports) -------------------------------------
class DeliveryRejected(CXMError):
    status_code = 400
    code = "rejected"


class ConnectorNotFound(DeliveryRejected):
    status_code = 404
    code = "unknown_connector"


class ConnectorDisabled(DeliveryRejected):
    status_code = 403
    code = "connector_disabled"


class SignatureMissing(DeliveryRejected):
    status_code = 401
    code = "signature_missing"


class SignatureInvalid(DeliveryRejected):
    status_code = 403
    code = "signature_invalid"


class SecretNotConfigured(DeliveryRejected):
    """Fail closed: a connector without its shared secret accepts nothing."""

    status_code = 403
    code = "secret_not_configured"


class ReplayRejected(DeliveryRejected):
    status_code = 403
    code = "replay_rejected"


class PayloadTooLarge(DeliveryRejected):
    status_code = 413
    code = "payload_too_large"


class PayloadInvalid(DeliveryRejected):
    status_code = 400
    code = "payload_invalid"


class MethodNotAllowed(DeliveryRejected):
    status_code = 405
    code = "method_not_allowed"


class ConfigInvalid(CXMError):
    status_code = 400
    code = "config_invalid"


# --- Failures talking to a provider ------------------------------------------------------------
# A provider's Retry-After is honoured up to a day: a larger one is a bug (or hostile), and would
# park the connector for years or overflow the schedule.
MAX_RETRY_AFTER_SECONDS = 86_400.0


class ProviderError(Exception):
    """A provider call failed. `retryable` failures are retried with backoff."""

    retryable = True

    def __init__(self, reason: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = None if retry_after is None else _capped_seconds(retry_after)
        self.status = status


def _capped_seconds(value: float) -> float:
    try:
        seconds = float(value)
    except OverflowError:  # an integer too large for a float
        return MAX_RETRY_AFTER_SECONDS
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


class ProviderUnavailable(ProviderError):
    """Timeout, connection error or 5xx."""


class ProviderRateLimited(ProviderError):
    """429, honouring Retry-After."""


class ProviderAuthError(ProviderError):
    """401/403: credentials are wrong or revoked. Retried slowly; an admin must act."""


class ProviderRejected(ProviderError):
    """A permanent 4xx for this request (bad recipient, window closed...). Not retried."""

    retryable = False


class NotSupported(ProviderError):
    """The source cannot do this (for example, replying to an RSS feed)."""

    retryable = False
