"""worker_client: talks to a jobserver over HTTP only (imports nothing from
jobserver), so that it installs and runs on a compute node by itself."""
from .client import ApiError, Client, Job, Unavailable

__all__ = ["ApiError", "Client", "Job", "Unavailable"]
