"""Candor's benchmark harness: ``python -m bench`` measures each stage against its baseline (see __main__)."""
