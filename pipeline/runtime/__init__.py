"""Runtimes drive pure processors over an event log into a projection sink."""
