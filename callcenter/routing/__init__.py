"""Call routing: the pure router, Erlang staffing formulas, escalation and simulation."""
