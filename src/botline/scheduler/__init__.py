"""Scheduled continuations: the model's tools, timing (cron, time zones, DST), activation."""
