"""Tests of macelerate.pipeline (the compress pipeline)."""
