"""Simulate a whole consortium on one machine: split data, start processes, compare models."""
