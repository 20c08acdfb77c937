"""arq glue: the task entry points, the lane lock, retries, the worker and its sweeper.
The work itself is ``deskbridge.flows``'."""

from deskbridge.pipeline.tasks import deliver_to_channel, deliver_to_desk
from deskbridge.pipeline.worker import build_worker, run_worker, sweep_once

__all__ = [
    "build_worker",
    "deliver_to_channel",
    "deliver_to_desk",
    "run_worker",
    "sweep_once",
]
