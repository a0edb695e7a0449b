"""Asterisk adapter (FastAGI / AMI). Reserved: the Twilio adapter is the first provider."""
