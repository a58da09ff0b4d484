"""Alarms: rules (``rules``), their pure evaluation (``evaluator``) and the runner that
feeds the evaluator from the log (``runner``)."""
