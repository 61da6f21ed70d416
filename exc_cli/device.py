"""`exc login` in a browser: the OAuth 2.0 device authorization grant (RFC 8628).

The portal gives a device code and a short user code; the user types the user code (or
opens the complete URL) in a browser, signs in and approves; meanwhile this polls the
token endpoint at the interval the portal asks for, slowing down when told to.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .client import EXIT_NETWORK, TIMEOUT, ExcError

EXIT_DENIED = 6
EXIT_EXPIRED = 7
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE_RE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$")
URL_RE = re.compile(r"^https?://[A-Za-z0-9:/._~%?&=+\-\[\]@]{1,500}$")
DEVICE_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{16,200}$")
MAX_INTERVAL = 60
MAX_LIFETIME = 30 * 60
SLOW_DOWN_STEP = 5


def pause(seconds: float) -> None:
    time.sleep(seconds)


@dataclass(frozen=True)
class Started:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


@dataclass(frozen=True)
class Granted:
    token: str
    org: str
    user: str
    expires_at: str


def _post(client: httpx.Client, url: str, path: str, body: dict[str, str]) -> httpx.Response:
    try:
        return client.post(path, json=body)
    except httpx.TimeoutException:
        raise ExcError(f"the Excloud API at {url} did not answer in time", EXIT_NETWORK) from None
    except httpx.TransportError as e:
        reason = str(e) or type(e).__name__
        raise ExcError(f"cannot reach the Excloud API at {url}: {reason}", EXIT_NETWORK) from None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ExcError(f"the portal answered HTTP {response.status_code} without a JSON object")
    return data


def _int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ExcError("the portal's device login answer was not what exc expects")
    return value


class DeviceLogin:
    def __init__(self, url: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url + "/api/v1/device",
            headers={"Accept": "application/json"},
            timeout=TIMEOUT,
            transport=transport,
        )

    def start(self, device_name: str) -> Started:
        response = _post(self._client, self.url, "/code", {"device_name": device_name})
        data = _json(response)
        if response.status_code == 429:
            raise ExcError("too many device logins from this address; try again in a while")
        if not response.is_success:
            raise ExcError(f"the portal refused a device login (HTTP {response.status_code})")
        fields = (
            (data.get("device_code"), DEVICE_CODE_RE),
            (data.get("user_code"), USER_CODE_RE),
            (data.get("verification_uri"), URL_RE),
        )
        if not all(isinstance(v, str) and rx.match(v) for v, rx in fields):
            raise ExcError("the portal's device login answer was not what exc expects")
        complete = data.get("verification_uri_complete")
        if not (isinstance(complete, str) and URL_RE.match(complete)):
            complete = data["verification_uri"]
        return Started(
            device_code=data["device_code"],
            user_code=data["user_code"],
            verification_uri=data["verification_uri"],
            verification_uri_complete=complete,
            expires_in=_int(data.get("expires_in"), 1, MAX_LIFETIME),
            interval=_int(data.get("interval", 5), 1, MAX_INTERVAL),
        )

    def wait(self, started: Started) -> Granted:
        """Poll until the user decides or the code expires."""
        interval = started.interval
        deadline = time.monotonic() + started.expires_in
        body = {"device_code": started.device_code, "grant_type": GRANT_TYPE}
        while True:
            pause(interval)
            response = _post(self._client, self.url, "/token", body)
            data = _json(response)
            if response.is_success:
                token, org = data.get("access_token"), data.get("org")
                if not isinstance(token, str) or not isinstance(org, dict):
                    raise ExcError("the portal's token answer was not what exc expects")
                return Granted(
                    token=token,
                    org=str(org.get("name", "")),
                    user=str(data.get("user", "")),
                    expires_at=str(data.get("expires_at") or ""),
                )
            error = data.get("error")
            if error == "authorization_pending":
                pass
            elif error == "slow_down":
                interval = min(interval + SLOW_DOWN_STEP, MAX_INTERVAL)
            elif error == "access_denied":
                raise ExcError("the sign-in was denied in the browser; no token", EXIT_DENIED)
            elif error == "expired_token":
                raise ExcError(
                    "the code expired before it was approved; run `exc login` again",
                    EXIT_EXPIRED,
                )
            elif error == "invalid_grant":
                raise ExcError(
                    "the portal no longer knows this code (it was used); run `exc login` again",
                    EXIT_EXPIRED,
                )
            else:
                raise ExcError(f"the portal refused the device login (HTTP {response.status_code})")
            if time.monotonic() >= deadline:
                raise ExcError(
                    "the code expired before it was approved; run `exc login` again",
                    EXIT_EXPIRED,
                )
