"""Scheduled jobs (APScheduler) that fill the outbox; they never send anything themselves."""
