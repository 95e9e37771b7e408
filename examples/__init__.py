"""Runnable examples: the classic Celery introduction, ported to aioqueue."""
