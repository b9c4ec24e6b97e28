"""The plan: what a plan file says, and the one thing we write back into it.

Owns the step model (``model``), the SPEC.md grammar (``specmd``), field values
(``fields``, ``durations``), status markers (``header``), marking the file
(``marking``: where each header line is, ``headercache``; the compare-and-swap
write, ``filecas``, made of ``fileops``) and its record of what it wrote
(``journal``), the dependency graph (``graph``) and step selection
(``selection``). Pure: imports nothing from pytest, ``run`` or ``agent``, so every
rule here is unit-tested directly. Public face: ``specmd.parse_with_configs``,
``marking.mark``, ``marking.read_marker``, ``marking.restore_lost_markers``,
``selection.parse_steps`` / ``select``, ``model.Step``.
"""
