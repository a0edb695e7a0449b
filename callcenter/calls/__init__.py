"""Calls: the service that runs the IVR engine for live calls and keeps their state in the database."""
