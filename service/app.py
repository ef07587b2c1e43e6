"""Build the Faust app of one worker from `Settings`.

`create_runtime` returns the app with its topics, model table, agents, timers and web
views installed. The app creates every topic it uses (the broker may forbid automatic
topic creation) and serves ``/metrics`` and ``/health/*`` on ``DRLHF_WEB_HOST``:``DRLHF_WEB_PORT``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faust
from faust.types.auth import CredentialsT
from prometheus_client import CollectorRegistry

from service.agents.checkpointing import register_checkpointing
from service.agents.harvest import register_harvest_agent
from service.agents.learn import register_learn_agent
from service.checkpoint import ModelStore
from service.faust_sensor import install_faust_sensor
from service.health import HealthState, register_health_views
from service.lag import register_lag_monitor
from service.metrics import ServiceMetrics
from service.runtime import Runtime
from service.settings import Settings
from service.tables import declare_model_table
from service.transport import install_transport
from service.topics import declare_topics

logger = logging.getLogger(__name__)


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """Return Faust credentials for the configured security protocol, or None for PLAINTEXT."""
    context = settings.ssl_context()
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(settings: Settings) -> faust.App:
    """Create the bare Faust app with the service's broker, topic and web configuration."""
    # Faust's own default is "{app id}-data" in the working folder. Faust creates only the
    # last folder of the path, so the parents are made here.
    data_dir = {}
    if settings.data_dir:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        data_dir["datadir"] = settings.data_dir
    app = faust.App(
        settings.app_id,
        **data_dir,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(settings),
        store="memory://",
        autodiscover=False,
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        topic_disable_leader=True,
        producer_max_request_size=settings.max_model_bytes,
        consumer_max_fetch_size=settings.max_model_bytes,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_ms / 1000 / 4),
        stream_wait_empty=True,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
    )

    # Declaring a topic creates the app's transport, so this runs before `declare_topics`.
    install_transport(app)
    return app


def create_runtime(settings: Settings, registry: CollectorRegistry | None = None) -> Runtime:
    """Create the app and install topics, the model table, agents, timers and web views."""
    app = create_app(settings)
    metrics = ServiceMetrics(registry, max_model_ids=settings.metrics_max_model_ids)
    topics = declare_topics(app, settings)
    table = declare_model_table(app, settings)
    store = ModelStore(
        table,
        settings.model,
        every_events=settings.checkpoint_every_events,
        interval_ms=settings.checkpoint_interval_ms,
    )
    runtime = Runtime(settings, app, topics, table, store, metrics, HealthState(settings.stall_timeout_s))

    # Faust's own sensor shares the registry, so one scrape of /metrics returns both sets.
    install_faust_sensor(app, metrics.registry)

    register_learn_agent(runtime)
    register_harvest_agent(runtime)
    register_checkpointing(runtime)
    register_lag_monitor(runtime)
    register_health_views(runtime)

    return runtime
