"""Scheduled outbound beyond plain SMS: waiting-room recall calls driven by hospital queue
events, results heard on the phone after identity checks, and appointment reminders by voice.

Every call placed here is an outbox row (channel ``call``, template = the flow's name) that
the dispatcher places; when the patient answers, :mod:`.outbound` runs the named flow from
``ivr_flows/`` on the same engine as inbound calls. See ``docs/recall.md``.
"""
