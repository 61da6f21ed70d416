"""The Excloud REST API from the command line's side: one request, one answer or one error."""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8000"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)

EXIT_ERROR = 1
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_NETWORK = 5


class ExcError(Exception):
    """Something to tell the user in one line, with the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Api:
    def __init__(self, url: str, token: str, *, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=TIMEOUT,
            transport=transport,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            msg = f"the Excloud API at {self.url} did not answer in time"
            raise ExcError(msg, EXIT_NETWORK) from None
        except httpx.TransportError as e:
            reason = str(e) or type(e).__name__
            msg = f"cannot reach the Excloud API at {self.url}: {reason}"
            raise ExcError(msg, EXIT_NETWORK) from None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise ExcError(f"the server at {self.url} did not answer with JSON") from None
        raise _error(response, self.url)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v})


def _error(response: httpx.Response, url: str) -> ExcError:
    try:
        body = response.json()
        message = str(body.get("message") or body.get("detail") or "")
    except (ValueError, AttributeError):
        message = ""
    status = response.status_code
    message = " ".join(message.split()) or response.reason_phrase or "no details"
    if status == 401:
        return ExcError(
            f"the API token was refused ({message}). Log in again with `exc login` "
            "(or `exc login --token exc_…`), or set EXC_TOKEN",
            EXIT_AUTH,
        )
    if status == 403:
        return ExcError(f"not allowed: {message}", EXIT_AUTH)
    if status == 404:
        return ExcError(f"not found: {message}", EXIT_NOT_FOUND)
    if status >= 500:
        return ExcError(f"the Excloud API at {url} failed (HTTP {status}); try again later")
    return ExcError(f"{message} (HTTP {status})")
