"""Auditing plugins: empirical checks of a training run's privacy claim (``audit.dp``)."""
