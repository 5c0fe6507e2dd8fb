"""The ``cargohold`` command line: argument parsing and output only."""
