from __future__ import annotations

import logging
import os

from celery import Celery
from celery.beat import PersistentScheduler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "excloud_portal.settings")

log = logging.getLogger(__name__)

app = Celery("excloud_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Connects the task outcome counters and the worker's metrics server to Celery's signals.
from excloud_portal import metrics  # noqa: E402, F401


class CatchUpScheduler(PersistentScheduler):
    """Celery beat's scheduler, saying plainly when a scheduled run could not be sent.

    Beat moves an entry to its next run before sending it, so a run that cannot reach the
    broker (after the publish retries in settings.BEAT_PUBLISH_RETRY_POLICY) is not sent
    later. Every scheduled task is a sweep over what is due when it runs, so the next run
    does the missed run's work; this log line is how an operator learns one was missed.
    """

    def apply_entry(self, entry, producer=None):
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception:  # noqa: BLE001 - beat must keep ticking for the other entries
            log.error(
                "missed the scheduled run of %s (%s, %s): the broker could not be reached; "
                "the next run does its work",
                entry.name,
                entry.task,
                entry.schedule,
                exc_info=True,
            )
        else:
            log.info("sent the scheduled run of %s (%s)", entry.name, entry.task)
