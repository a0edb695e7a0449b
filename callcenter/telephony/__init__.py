"""Telephony adapters: the only code that speaks a provider's protocol (Twilio, Asterisk)."""
