"""Tests of the environment-driven service settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dynamic_rlhf import HarvestPolicy, ModelConfig
from service.settings import OPTIONS, Settings, SettingsError, configurable_fields, markdown_table


def test_defaults_match_documented_values() -> None:
    settings = Settings.from_env({})

    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.app_id == "dynamic-rlhf"
    assert settings.web_host == "127.0.0.1"
    assert settings.web_port == 6066
    assert settings.partitions == 4
    assert settings.replication_factor == 1
    assert settings.processing_guarantee == "at_least_once"
    assert settings.topic_preferences == "drlhf.preferences"
    assert settings.topic_dead_letters == "drlhf.dead-letters"
    assert settings.metrics_max_model_ids == 20
    assert settings.model == ModelConfig()
    assert settings.policy == HarvestPolicy()
    assert settings.changelog_topic == "dynamic-rlhf-models-changelog"


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.partitions = 8  # type: ignore[misc]


def test_values_parsed_from_environment() -> None:
    settings = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9093, 127.0.0.1:9094",
        "DRLHF_PARTITIONS": "8",
        "DRLHF_PUBLISH_LABEL_PAIRS": "yes",
        "DRLHF_PROCESSING_GUARANTEE": " at_least_once ",
        "DRLHF_LOG_LEVEL": "debug",
    })

    assert settings.bootstrap_servers == "127.0.0.1:9093,127.0.0.1:9094"
    assert settings.partitions == 8
    assert settings.publish_label_pairs is True
    assert settings.processing_guarantee == "at_least_once"
    assert settings.log_level == "DEBUG"


def test_exactly_once_rejected_with_reason() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DRLHF_PROCESSING_GUARANTEE": "exactly_once"})

    message = str(raised.value)
    assert message.startswith("invalid DRLHF_PROCESSING_GUARANTEE='exactly_once': exactly_once is not supported")
    assert "use at_least_once" in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DRLHF_PARTITIONS", "0"),
        ("DRLHF_PARTITIONS", "four"),
        ("DRLHF_WEB_PORT", "70000"),
        ("DRLHF_PROCESSING_GUARANTEE", "at_most_once"),
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port"),
        ("DRLHF_PUBLISH_LABEL_PAIRS", "maybe"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS"),
    ],
)
def test_invalid_value_names_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({variable: value})

    message = str(error.value)
    assert variable in message
    assert repr(value) in message
    assert "default" in message


def test_sasl_without_credentials_rejected() -> None:
    with pytest.raises(SettingsError, match="KAFKA_SASL_USERNAME"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})


def test_sasl_options_reach_kafka_client() -> None:
    settings = Settings.from_env({
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_SASL_PASSWORD": "s3cret",
    })

    options = settings.aiokafka_options()
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "svc"
    assert options["sasl_plain_password"] == "s3cret"
    assert settings.describe()["KAFKA_SASL_PASSWORD"] == "***"
    assert "s3cret" not in repr(settings.describe())


def test_core_fields_configurable_by_prefix() -> None:
    settings = Settings.from_env({"DRLHF_MODEL_LEARNING_RATE": "0.05", "DRLHF_POLICY_TOP_K": "2",
                                  "DRLHF_POLICY_EMIT_SFT": "false"})

    assert settings.model.learning_rate == 0.05
    assert settings.policy.top_k == 2
    assert settings.policy.emit_sft is False
    assert ("learning_rate", float) in configurable_fields(ModelConfig)


def test_core_validation_error_names_variable() -> None:
    with pytest.raises(SettingsError, match="DRLHF_MODEL_LEARNING_RATE=-1"):
        Settings.from_env({"DRLHF_MODEL_LEARNING_RATE": "-1"})


def test_limit_override_parsed() -> None:
    settings = Settings.from_env({"DRLHF_LIMIT_MAX_COMPLETIONS": "5"})

    assert settings.limits.max_completions == 5


def test_bad_core_value_names_variable() -> None:
    with pytest.raises(SettingsError, match="DRLHF_LIMIT_MAX_COMPLETIONS='many'"):
        Settings.from_env({"DRLHF_LIMIT_MAX_COMPLETIONS": "many"})


def test_markdown_table_lists_every_variable() -> None:
    table = markdown_table()

    for option in OPTIONS:
        assert f"`{option.env}`" in table
    assert "`DRLHF_LIMIT_MAX_EVENT_BYTES`" in table


def test_docs_list_every_variable() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text(encoding="utf-8")

    for line in markdown_table().splitlines()[2:]:
        variable = line.split("`")[1]
        assert f"`{variable}`" in docs, f"{variable} missing from docs/service.md; run python -m service.settings"
