"""Accountability: the tamper-evident record of every identification (``log``, ``chain``,
``signing``, ``verify``), who asked and why (``caller``), what is recorded for each operation
(``recorder``), two-person review of candidates (``review``), collection settings (``settings``),
exports and the accountability report (``export``, ``report``) and retention (``retention``).

Nothing here is imported by ``faceprint`` at start-up; each class takes its dependencies
explicitly (paths, clock, keys) so that tests can build it alone.
"""
