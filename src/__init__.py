"""Directional pruning with gRDA: optimizer, models, data and training harness."""
