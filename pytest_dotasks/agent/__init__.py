"""The agent: a step without ``run:`` is carried out by a coding agent.

Owns agent and skill definitions (``definitions``, read as leniently as Claude
Code reads them by ``frontmatter``; the model aliases in ``models``), the
prompt (``prompt``), the tools (``tools``) and the workspace they run in
(``workspace``), the session interface with usage and transcript
(``session``), the price table (``pricing``, data in ``prices.json``, which
users can override), the spending limits (``spending``), and one module per
backend: ``anthropic_api`` (with ``api_request`` and ``api_errors``),
``claude_code`` (with ``claude_code_guard``) and ``command``. Public face:
``launch.open_session(ctx)``, ``launch.render_prompt(ctx)`` and, for warnings
at collection, ``definitions.definition_warnings(root)``. Imports ``run`` (the
step context), ``settings`` and ``plan``, never pytest. ``anthropic`` and the Claude Agent SDK are imported only when a
session actually talks to a model.
"""
