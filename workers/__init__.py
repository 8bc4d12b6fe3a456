"""Celery app, queues and tasks; embedded Redis."""
