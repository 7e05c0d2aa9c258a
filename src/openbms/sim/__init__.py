"""Validation plant: physics cells, vehicle drive power and sensor models."""
