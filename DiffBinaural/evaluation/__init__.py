"""Evaluation: the metrics (``metrics``, the JSON keys of evaluate.py) and the listening page (``listening``)."""
