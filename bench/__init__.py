"""cargohold's benchmark against CNCF Distribution: ``python -m bench`` (see bench/run.py)."""
