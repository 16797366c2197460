"""A Payment API simulator that produces transaction events into Kafka."""
