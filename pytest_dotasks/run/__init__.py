"""Running one step: everything between "start STEP 8" and its verdict.

Owns the step's context (``context``), its phases (``phases``: pre-flight, body,
post-validation, retries), the check runner (``checks``) and the built-in checks
(``builtin_checks``, ``probes``), subprocesses (``process``), the task log
(``tasklog``), and background steps (``background``, the detached ``supervisor``,
and ``settle``: monitoring, settling, waiting and reconciling). Imports ``plan``,
never pytest; the agent is reached through the small ``AgentSession`` interface
of ``context``, opened by a callable the pytest face hands in.
"""
