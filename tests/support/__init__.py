"""Test support: real services (Kafka, PostgreSQL) for the tests, and ground-truth helpers."""
