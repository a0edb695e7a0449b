"""Console users: who may sign in to the agents console, with which role, and their sessions.

:mod:`.models` holds the tables (migration ``0008_console_users``), :mod:`.service` the
:class:`~callcenter.users.service.UserService` (passwords, lockout, server-side sessions),
:mod:`.cli` the ``callcenter users`` commands.
"""
