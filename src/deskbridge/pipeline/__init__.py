"""The work between intake and the edges: arq tasks, retries, ordering, dead letters."""

from deskbridge.pipeline.retry import RetryPolicy
from deskbridge.pipeline.runtime import Runtime
from deskbridge.pipeline.tasks import deliver_to_channel, deliver_to_desk
from deskbridge.pipeline.worker import build_worker, run_worker, sweep_once

__all__ = [
    "RetryPolicy",
    "Runtime",
    "build_worker",
    "deliver_to_channel",
    "deliver_to_desk",
    "run_worker",
    "sweep_once",
]
