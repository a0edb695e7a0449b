"""Calls: the service that runs the IVR engine for live calls, with their state in the database."""
