"""Single-node Kafka broker (KRaft, combined broker and controller) for local runs and tests.

The ``kafka-local`` script next to this package is the command-line entry point. Only the
Python standard library is used, so the launcher runs with any Python 3.9+ interpreter.
"""

KAFKA_VERSION = "4.2.2"
"""Apache Kafka release that ``pom.xml`` pins; the two values must match."""
