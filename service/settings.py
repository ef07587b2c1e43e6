"""Service configuration: one frozen `Settings` object built once from the environment.

Every field names its environment variable, default and unit in `OPTIONS`; the table in
``docs/service.md`` is generated from it (``python -m service.settings``). Core model
hyperparameters, harvesting policy parameters and input limits are read field by field
from the core dataclasses, so a new field there becomes configurable without a change here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import ssl
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dynamic_rlhf import HarvestPolicy, ModelConfig
from service.limits import Limits

ProcessingGuarantee = Literal["at_least_once"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

SECURITY_PROTOCOLS: tuple[str, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
GUARANTEES: tuple[str, ...] = ("at_least_once",)
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")
SECRET_FIELDS: frozenset[str] = frozenset({"sasl_password"})

MODEL_PREFIX = "DRLHF_MODEL_"
POLICY_PREFIX = "DRLHF_POLICY_"
LIMIT_PREFIX = "DRLHF_LIMIT_"


class SettingsError(ValueError):
    """An environment variable contains a value the service cannot use."""


@dataclass(frozen=True)
class Option:
    """One scalar setting: its field, variable, default (as written in the environment) and unit."""

    field: str
    env: str
    default: str
    unit: str
    help: str
    parse: Callable[[str], Any]


def _positive_int(text: str) -> int:
    number = int(text)
    if number < 1:
        raise ValueError("expected an integer >= 1")
    return number


def _port(text: str) -> int:
    number = int(text)
    if not 1 <= number <= 65535:
        raise ValueError("expected a TCP port between 1 and 65535")
    return number


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a non-empty string")
    return text.strip()


def _optional(text: str) -> str | None:
    return text.strip() or None


def _guarantee(text: str) -> str:
    value = text.strip()
    if value == "exactly_once":
        # faust-streaming 0.15.3: with a second worker joining while events flowed, a model's final
        # checkpoint missed 200 of its 1,200 events in 2 of 16 runs.
        raise ValueError("exactly_once is not supported, because Faust's transactional mode lost events when "
                         "the consumer group rebalanced; use at_least_once, under which the model checkpoints "
                         "already apply every event exactly once")
    return _choice(*GUARANTEES)(value)


def _choice(*choices: str, upper: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper() if upper else text.strip()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def _bootstrap(text: str) -> str:
    servers = [part.strip() for part in text.split(",") if part.strip()]
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("expected comma-separated host:port pairs, for example 127.0.0.1:9092")
    if not servers:
        raise ValueError("expected at least one host:port")
    return ",".join(servers)


OPTIONS: tuple[Option, ...] = (
    Option("bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "host:port list",
           "Kafka brokers, comma-separated.", _bootstrap),
    Option("security_protocol", "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "-",
           "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.", _choice(*SECURITY_PROTOCOLS, upper=True)),
    Option("sasl_mechanism", "KAFKA_SASL_MECHANISM", "PLAIN", "-",
           "SASL mechanism for the SASL_* protocols: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
           _choice(*SASL_MECHANISMS, upper=True)),
    Option("sasl_username", "KAFKA_SASL_USERNAME", "", "-", "SASL user name.", _optional),
    Option("sasl_password", "KAFKA_SASL_PASSWORD", "", "-", "SASL password (never logged).", _optional),
    Option("ssl_cafile", "KAFKA_SSL_CAFILE", "", "path", "CA bundle that signs the broker certificates.", _optional),
    Option("ssl_certfile", "KAFKA_SSL_CERTFILE", "", "path", "Client certificate for mutual TLS.", _optional),
    Option("ssl_keyfile", "KAFKA_SSL_KEYFILE", "", "path", "Private key of the client certificate.", _optional),
    Option("app_id", "DRLHF_APP_ID", "dynamic-rlhf", "-",
           "Faust app id: the consumer group and the prefix of the changelog topic.", _non_empty),
    Option("web_host", "DRLHF_WEB_HOST", "127.0.0.1", "address",
           "Address the web server binds (`/metrics`, `/health/*`).", _non_empty),
    Option("web_port", "DRLHF_WEB_PORT", "6066", "TCP port", "Port of the web server.", _port),
    Option("topic_preferences", "DRLHF_TOPIC_PREFERENCES", "drlhf.preferences", "-",
           "Input topic of preference events, keyed by model id.", _non_empty),
    Option("topic_candidates", "DRLHF_TOPIC_CANDIDATES", "drlhf.candidates", "-",
           "Input topic of candidate sets, keyed by model id.", _non_empty),
    Option("topic_records", "DRLHF_TOPIC_RECORDS", "drlhf.records", "-",
           "Output topic of fine-tune records, keyed by record id.", _non_empty),
    Option("topic_dead_letters", "DRLHF_TOPIC_DEAD_LETTERS", "drlhf.dead-letters", "-",
           "Output topic of rejected input messages.", _non_empty),
    Option("partitions", "DRLHF_PARTITIONS", "4", "partitions",
           "Partitions of every topic the service creates; inputs and the model table share it.",
           _positive_int),
    Option("replication_factor", "DRLHF_REPLICATION_FACTOR", "1", "replicas",
           "Replication factor of every topic the service creates.", _positive_int),
    Option("checkpoint_every_events", "DRLHF_CHECKPOINT_EVERY_EVENTS", "50000", "events",
           "Write the model checkpoint after this many applied events.", _positive_int),
    Option("checkpoint_interval_ms", "DRLHF_CHECKPOINT_INTERVAL_MS", "5000", "ms",
           "Write the model checkpoint at least this often while events arrive.", _positive_int),
    Option("max_model_bytes", "DRLHF_MAX_MODEL_BYTES", "33554432", "bytes",
           "Largest checkpoint value: the changelog's max.message.bytes and the producer's "
           "max_request_size.", _positive_int),
    Option("changelog_segment_bytes", "DRLHF_CHANGELOG_SEGMENT_BYTES", "67108864", "bytes",
           "segment.bytes of the changelog topic; smaller segments are compacted sooner.", _positive_int),
    Option("session_timeout_ms", "DRLHF_SESSION_TIMEOUT_MS", "30000", "ms",
           "Consumer group session timeout: how long the group waits for a crashed worker before "
           "giving its partitions to others. The broker bounds it by group.min.session.timeout.ms.",
           _positive_int),
    Option("processing_guarantee", "DRLHF_PROCESSING_GUARANTEE", "at_least_once", "-",
           "Faust processing guarantee. Only at_least_once is accepted: the model checkpoints make "
           "each update exactly-once, and Faust's exactly_once mode lost events at rebalances.", _guarantee),
    Option("batch_max_events", "DRLHF_BATCH_MAX_EVENTS", "500", "events",
           "Largest micro-batch an agent takes from its input.", _positive_int),
    Option("batch_wait_ms", "DRLHF_BATCH_WAIT_MS", "50", "ms",
           "Longest wait to fill a micro-batch of candidate sets; the learn agent never waits.", _positive_int),
    Option("publish_label_pairs", "DRLHF_PUBLISH_LABEL_PAIRS", "false", "bool",
           "Also publish each human-labelled pair as a preference record.", _bool),
    Option("metrics_max_model_ids", "DRLHF_METRICS_MAX_MODEL_IDS", "20", "model ids",
           "Distinct model_id label values; later model ids are reported as `other`.", _positive_int),
    Option("lag_interval_ms", "DRLHF_LAG_INTERVAL_MS", "5000", "ms",
           "Period of the consumer-lag measurement.", _positive_int),
    Option("stall_timeout_s", "DRLHF_STALL_TIMEOUT_S", "120", "s",
           "`/health/live` fails when an input partition has lag and no event was consumed for "
           "this long.", _positive_int),
    Option("shutdown_timeout_s", "DRLHF_SHUTDOWN_TIMEOUT_S", "20", "s",
           "After SIGTERM or SIGINT, the worker exits with status 1 if it has not stopped within "
           "this long, for example because the broker is unreachable. Keep it below the grace "
           "period of the process manager.", _positive_int),
    Option("data_dir", "DRLHF_DATA_DIR", "", "path",
           "Folder for Faust's local files. The model table lives in memory, so the folder stays "
           "empty. Unset: `<DRLHF_APP_ID>-data` in the working folder.", _optional),
    Option("log_level", "DRLHF_LOG_LEVEL", "INFO", "-", "DEBUG, INFO, WARNING or ERROR.",
           _choice(*LOG_LEVELS, upper=True)),
)


@dataclass(frozen=True)
class Settings:
    """Effective service configuration (see `OPTIONS` for variables, defaults and units)."""

    bootstrap_servers: str
    security_protocol: str
    sasl_mechanism: str
    sasl_username: str | None
    sasl_password: str | None
    ssl_cafile: str | None
    ssl_certfile: str | None
    ssl_keyfile: str | None
    app_id: str
    web_host: str
    web_port: int
    topic_preferences: str
    topic_candidates: str
    topic_records: str
    topic_dead_letters: str
    partitions: int
    replication_factor: int
    checkpoint_every_events: int
    checkpoint_interval_ms: int
    max_model_bytes: int
    changelog_segment_bytes: int
    session_timeout_ms: int
    processing_guarantee: str
    batch_max_events: int
    batch_wait_ms: int
    publish_label_pairs: bool
    metrics_max_model_ids: int
    lag_interval_ms: int
    stall_timeout_s: int
    shutdown_timeout_s: int
    data_dir: str | None
    log_level: str
    model: ModelConfig = field(default_factory=ModelConfig)
    policy: HarvestPolicy = field(default_factory=HarvestPolicy)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from `env` (default: ``os.environ``); raise `SettingsError` on a bad value."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for option in OPTIONS:
            text = env.get(option.env, option.default)
            values[option.field] = _parse_option(option, text)

        values["model"] = _dataclass_from_env(ModelConfig, MODEL_PREFIX, env)
        values["policy"] = _dataclass_from_env(HarvestPolicy, POLICY_PREFIX, env)
        values["limits"] = _dataclass_from_env(Limits, LIMIT_PREFIX, env)
        settings = cls(**values)
        settings._check_security()
        return settings

    def _check_security(self) -> None:
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise SettingsError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs credentials; "
                "set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )

    @property
    def changelog_topic(self) -> str:
        """Name of the model table's changelog topic (Faust names it ``<app id>-<table>-changelog``)."""
        return f"{self.app_id}-models-changelog"

    def ssl_context(self) -> ssl.SSLContext | None:
        """Return a client TLS context for the SSL protocols, else None."""
        if not self.security_protocol.endswith("SSL"):
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def aiokafka_options(self) -> dict[str, Any]:
        """Return keyword arguments for aiokafka clients (bootstrap servers and security)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options

    def describe(self) -> dict[str, Any]:
        """Return the settings as a flat dict for logging, with secrets masked."""
        flat: dict[str, Any] = {}
        for option in OPTIONS:
            value = getattr(self, option.field)
            flat[option.env] = "***" if option.field in SECRET_FIELDS and value else value
        for prefix, obj in ((MODEL_PREFIX, self.model), (POLICY_PREFIX, self.policy), (LIMIT_PREFIX, self.limits)):
            for item in dataclasses.fields(obj):
                flat[prefix + item.name.upper()] = getattr(obj, item.name)
        return flat


def _parse_option(option: Option, text: str) -> Any:
    try:
        return option.parse(text)
    except ValueError as exc:
        raise SettingsError(
            f"invalid {option.env}={text!r}: {exc}; unset it to use the default {option.default!r}"
        ) from None


_SCALAR_PARSERS: dict[Any, Callable[[str], Any]] = {int: int, float: float, bool: _bool, str: str}


def _optional_float(text: str) -> float | None:
    return None if text.strip().lower() in ("", "none") else float(text)


def _field_parser(kind: Any) -> Callable[[str], Any] | None:
    """Return the parser for a dataclass field type, or None when the type is not a scalar."""
    if kind in _SCALAR_PARSERS:
        return _SCALAR_PARSERS[kind]
    if typing.get_origin(kind) is Literal:
        return str  # the dataclass validates the choice
    if kind == (float | None):
        return _optional_float
    return None


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return " or ".join(map(str, typing.get_args(kind)))
    if kind == (float | None):
        return "float or none"
    return str(kind.__name__)


def configurable_fields(cls: type) -> list[tuple[str, Any]]:
    """Return the (name, type) pairs of a dataclass's fields that take a scalar from the environment."""
    hints = typing.get_type_hints(cls)
    result = []
    for item in dataclasses.fields(cls):
        kind = hints.get(item.name)
        if item.init and _field_parser(kind) is not None:
            result.append((item.name, kind))
    return result


def field_docs(cls: type) -> dict[str, str]:
    """Return the first line of each attribute's description in a numpydoc ``Attributes`` section."""
    docs: dict[str, str] = {}
    names: list[str] = []
    pending: list[str] = []
    in_section = False
    for line in (cls.__doc__ or "").splitlines():
        stripped = line.strip()
        is_name_line = not line.startswith(" " * 8)
        if stripped == "Attributes":
            in_section = True
        elif in_section and is_name_line and stripped.endswith(","):
            pending += [name.strip() for name in stripped[:-1].split(",")]  # names continue on the next line
        elif in_section and is_name_line and stripped.endswith(":"):
            names = pending + [name.strip() for name in stripped[:-1].split(",")]
            pending = []
        elif in_section and names and stripped:
            for name in names:
                docs[name] = stripped
            names = []
        elif in_section and stripped and not line.startswith(" "):
            break
    return docs


def _dataclass_from_env(cls: type, prefix: str, env: Mapping[str, str]) -> Any:
    overrides: dict[str, Any] = {}
    for name, kind in configurable_fields(cls):
        variable = prefix + name.upper()
        if variable not in env:
            continue
        text = env[variable]
        parse = _field_parser(kind)
        assert parse is not None
        try:
            overrides[name] = parse(text)
        except ValueError:
            raise SettingsError(
                f"invalid {variable}={text!r}: expected {_type_name(kind)}; unset it to use the default"
            ) from None

    try:
        return cls(**overrides)
    except ValueError as exc:
        names = ", ".join(prefix + name.upper() + "=" + env[prefix + name.upper()] for name in overrides)
        raise SettingsError(f"invalid {cls.__name__} from {names}: {exc}") from None


def markdown_table() -> str:
    """Return the Markdown table of every variable, its default, unit and meaning."""
    lines = ["| Variable | Default | Unit | Meaning |", "| --- | --- | --- | --- |"]
    for option in OPTIONS:
        default = f"`{option.default}`" if option.default else "(unset)"
        lines.append(f"| `{option.env}` | {default} | {option.unit} | {option.help} |")
    for prefix, cls in ((MODEL_PREFIX, ModelConfig), (POLICY_PREFIX, HarvestPolicy), (LIMIT_PREFIX, Limits)):
        defaults = cls()
        docs = field_docs(cls)
        for name, kind in configurable_fields(cls):
            value = getattr(defaults, name)
            meaning = docs.get(name, f"see `{cls.__module__}.{cls.__name__}`").replace("|", "\\|")
            lines.append(f"| `{prefix}{name.upper()}` | `{value}` | {_type_name(kind)} | "
                         f"`{cls.__name__}.{name}`: {meaning} |")
    return "\n".join(lines)


logger = logging.getLogger(__name__)

if __name__ == "__main__":
    print(markdown_table())
