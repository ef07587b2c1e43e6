"""Faust agents and timers of the service."""
