"""Base of every domain error. Each app's exceptions.py subclasses it with an HTTP status; the
DomainErrorMiddleware turns any of them into a JSON response in one place."""


class CXMError(Exception):
    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or self.code)
        self.reason = reason or self.code

    def as_dict(self) -> dict[str, str]:
        return {"error": self.code, "reason": self.reason}
