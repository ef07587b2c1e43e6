"""Broker configuration files: ``server.properties`` and the log4j2 setup."""

from __future__ import annotations

import socket

from .paths import StateLayout

LOOPBACK = "127.0.0.1"
NODE_ID = 1
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest record batch the broker accepts (16 MiB), so model checkpoints fit in one record."""

# Tuned for tests on a small machine: one replica everywhere, no rebalance delay, no
# automatic topic creation (tests and the service create their topics explicitly).
_BROKER_SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": str(NODE_ID),
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "10",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "false",
    "delete.topic.enable": "true",
    "message.max.bytes": str(MAX_MESSAGE_BYTES),
    "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
    "log.retention.hours": "24",
}

_LOG4J_TEMPLATE = """\
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.filePattern = {log_file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state-change.name = state.change.logger
logger.state-change.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def is_port_free(port: int) -> bool:
    """Tell whether ``127.0.0.1:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The broker binds with SO_REUSEADDR too, so connections of a stopped broker that
        # linger in TIME_WAIT do not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def pick_free_port(exclude: set[int] = frozenset()) -> int:
    """Return a loopback port that the kernel reports free and that is not in ``exclude``."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
        if port not in exclude:
            return port


def broker_settings(layout: StateLayout, port: int, controller_port: int) -> dict[str, str]:
    """Return every ``server.properties`` entry for a broker on ``port``."""
    settings = dict(_BROKER_SETTINGS)
    settings.update({
        "controller.quorum.voters": f"{NODE_ID}@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "log.dirs": str(layout.data_dir),
    })
    return settings


def write_config_files(layout: StateLayout, port: int, controller_port: int) -> None:
    """Write ``server.properties`` and ``log4j2.properties`` into the state directory."""
    layout.broker_log.parent.mkdir(parents=True, exist_ok=True)

    settings = broker_settings(layout, port, controller_port)
    lines = [f"{key}={value}" for key, value in settings.items()]
    layout.server_properties.write_text("\n".join(lines) + "\n")

    layout.log4j_config.write_text(_LOG4J_TEMPLATE.format(log_file=layout.broker_log))
