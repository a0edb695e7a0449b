"""Health Hotline (`callcenter`): an open-source health call center for a hospital network."""

__version__ = "0.1.0"
