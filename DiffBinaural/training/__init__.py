"""Training Stage 1: the trainer over the shared runtime (``trainer``)."""
