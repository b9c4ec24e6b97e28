"""Plan formats (DESIGN.md section 9): one step model, several parsers.

``blocks`` (the markdown every format shares), ``diagnose`` (never a silent zero,
never a silent drop), ``detect`` (which format a plan is), ``tasks`` (what
Spec Kit's and Kiro's ``tasks.md`` share), ``speckit`` and ``kiro``. The SPEC.md
grammar is ``plan.specmd``; its ``parse_with_configs`` and ``header_lines`` read
every format. Every parser returns the same ``model.Spec``.
"""
