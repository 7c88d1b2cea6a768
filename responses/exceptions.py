"""Errors of the responses domain, mapped to HTTP status by cxm.middleware.DomainErrorMiddleware."""

from cxm.exceptions import CXMError


class CaseNotFound(CXMError):
    status_code = 404
    code = "not_found"


class NotAllowed(CXMError):
    status_code = 403
    code = "forbidden"


class InvalidRequest(CXMError):
    status_code = 400
    code = "invalid"


class Conflict(CXMError):
    status_code = 409
    code = "conflict"
