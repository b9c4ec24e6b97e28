"""The agent: a step without ``run:`` is carried out by a coding agent.

Owns agent and skill definitions (``definitions``), the prompt (``prompt``), the
tools (``tools``) and the workspace they run in (``workspace``), the session
interface with usage and transcript (``session``), the price table
(``pricing``, data in ``prices.json``), and one module per backend:
``anthropic_api`` (with ``api_request`` and ``api_errors``), ``claude_code``
and ``command``. Public face: ``launch.open_session(ctx)`` and
``launch.render_prompt(ctx)``. Imports ``run`` (the step context) and ``plan``,
never pytest. ``anthropic`` and the Claude Agent SDK are imported only when a
session actually talks to a model.
"""
