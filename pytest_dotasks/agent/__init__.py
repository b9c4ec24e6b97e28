"""The agent: a step without ``run:`` is carried out by a coding agent.

Owns agent and skill definitions (``definitions``), the prompt (``prompt``), the
tools and workspace confinement (``tools``), the session interface with usage and
transcript (``session``), and the backends. Public face: ``launch.open_session(ctx)``
and ``launch.render_prompt(ctx)``. Imports ``run`` (the step context) and ``plan``,
never pytest. ``anthropic`` and the Claude Agent SDK are imported only when a
session actually talks to a model.
"""
