"""Messaging: inbound SMS, delivery statuses and (with the outbox dispatcher) everything sent."""
