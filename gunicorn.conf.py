"""gunicorn's configuration for the portal's web process in production (Procfile.prod).

The portal is served over WSGI by threaded workers: every view is synchronous, and the
audit export streams from a synchronous database cursor, which Django under ASGI would
read into memory whole before sending. A worker's threads share its process, so a long
export holds one thread, not a whole worker.

Read from the environment, and refused at start-up when malformed:

- ``WEB_BIND``: comma-separated addresses to listen on (default ``127.0.0.1:8000``). Never
  taken from ``PORT``, which honcho sets for every process of a Procfile.
- ``WEB_CONCURRENCY``: worker processes (default two per CPU, plus one).
- ``WEB_THREADS``: threads per worker (default 4), each with its own database connection.
- ``WEB_TIMEOUT``: seconds a worker may go silent before it is restarted (default 30).
"""

from __future__ import annotations

import os

DEFAULT_BIND = "127.0.0.1:8000"
DEFAULT_THREADS = 4
DEFAULT_TIMEOUT_SECONDS = 30


def _positive(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise SystemExit(f"{name} must be a whole number of at least 1, got {value!r}")
    return number


wsgi_app = "excloud_portal.wsgi:application"
bind = [address.strip() for address in os.environ.get("WEB_BIND", DEFAULT_BIND).split(",")]
if not all(bind):
    raise SystemExit(f"WEB_BIND must be addresses separated by commas, got {bind!r}")
workers = _positive("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1)
worker_class = "gthread"
threads = _positive("WEB_THREADS", DEFAULT_THREADS)
timeout = _positive("WEB_TIMEOUT", DEFAULT_TIMEOUT_SECONDS)
# Errors and start-up messages go to stderr, with the other processes' logs. No access
# log: a password reset link carries its token in the path, and paths must not reach logs.
errorlog = "-"
accesslog = None
# gunicorn 25.1 and later open a control socket by default, at one path per user in the
# home directory, which a second server on the same machine would take over. Nothing in
# this profile uses it; older versions ignore the setting.
control_socket_disable = True
