"""Twilio adapter: TwiML rendering, webhook blueprint and signature checks."""
