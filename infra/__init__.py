"""Local-mode infrastructure: the Kafka broker, topics and the process supervisor."""
