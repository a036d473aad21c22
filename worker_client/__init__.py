"""worker_client: talks to a jobserver over HTTP only (imports nothing from
jobserver), so that it installs and runs on a compute node by itself."""
from .client import ApiError, Client, Job, Unavailable
from .workflow import BashTask, CommandTask, Task, Workflow

__all__ = ["ApiError", "BashTask", "Client", "CommandTask", "Job", "Task", "Unavailable",
           "Workflow"]
