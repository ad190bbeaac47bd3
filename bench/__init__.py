"""Benchmarks: ``python -m bench NAME`` (``all`` runs every one). Each prints one JSON object as its last line and
writes it to ``reports/bench/NAME.json``; speed benchmarks compare against a peer measured in the same run."""
