"""Booking: clinics and slots, the rules, visit numbers and passwords, backends (SQL, FHIR)."""
