"""Shared machinery: data, replay, engine, tuning, tracking, reports, command line."""
