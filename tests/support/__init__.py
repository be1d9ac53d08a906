"""Helpers shared by the unit and proxy suites."""
