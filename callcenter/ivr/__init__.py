"""The IVR engine: flows are data (YAML); the engine is a pure function of (flow, state, event).

Nothing here imports a web framework, a telephony library, a database driver or a scheduler;
adapters turn :mod:`callcenter.ivr.instructions` into TwiML, AGI commands or terminal text.
"""
