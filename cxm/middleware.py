from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from cxm.exceptions import CXMError


class DomainErrorMiddleware:
    """Maps domain errors raised by views to their HTTP status with a JSON reason."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, CXMError):
            response = JsonResponse(exc.as_dict(), status=exc.status_code)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:
                response["Retry-After"] = str(int(retry_after))
            return response
        return None
