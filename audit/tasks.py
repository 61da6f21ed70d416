from __future__ import annotations

from celery import shared_task

from .checkpoints import sign_checkpoints as _sign_checkpoints


@shared_task(name="audit.tasks.sign_checkpoints")
def sign_checkpoints() -> int:
    """Sign a checkpoint for each audit chain that grew since its last one."""
    return _sign_checkpoints()
