"""Generators: models that write synthetic transitions into a base algorithm's replay."""
