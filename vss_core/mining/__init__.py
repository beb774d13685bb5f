"""Rare events, anomalies and mislabels: the scores (numpy/scikit-learn) and their runs over Redis."""
