"""The Celery application, built from settings (no module-level app)."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from quarry.core.errors import ConfigurationError
from quarry.core.settings import Settings

QUEUES = ("ingest", "search", "gpu", "research")
TASK_QUEUES = {
    "quarry.ingest_job": "ingest",
    "quarry.search_node": "search",
    "quarry.research_job": "research",
    "quarry.eval_job": "research",
    "quarry.precompute_context": "gpu",
}


def make_celery(settings: Settings, register: bool = False) -> Celery:
    """A Celery app on the configured Redis. Only workers `register` the task bodies; the
    API sends tasks by name."""
    url = settings.service.redis_url
    if not url:
        raise ConfigurationError("no Redis URL: set service.redis_url or start Quarry with `quarry serve`")
    app = Celery("quarry", broker=url, backend=url, set_as_current=False)
    s = settings.service
    app.conf.update(
        task_queues=[Queue(q) for q in QUEUES],
        task_default_queue="ingest",
        task_routes={name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        task_acks_late=True,  # a task whose worker dies is delivered again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=s.task_soft_time_limit_s,
        task_time_limit=s.task_time_limit_s,
        broker_transport_options={"visibility_timeout": s.visibility_timeout_s},
        result_backend_transport_options={"visibility_timeout": s.visibility_timeout_s},
        result_expires=3600,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    if register:
        from quarry.workers.tasks import register_tasks

        register_tasks(app, settings)
    return app
