"""Celery on Redis: the app, tasks, the assessments store, embedded mode."""
