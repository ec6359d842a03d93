"""Configuration of the event audit: where Scope's lifecycle events are read, and how they are judged.

Secrets never come from the file: the SASL credentials are read from the environment variables
named here. Without `bootstrap_servers` (or $KAFKA_BOOTSTRAP_SERVERS) no source is configured and
every run's audit reads "no events source".
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_TOPIC = "scope-events"  # Scope's KAFKA_TOPIC default
DEFAULT_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"


class EventsSettings(BaseModel):
    """The `events` section: the Kafka source of Scope's lifecycle events and the audit's tolerances."""

    model_config = STRICT

    bootstrap_servers: str | None = Field(None, description="host:port[,host:port]; None: $bootstrap_env, "
                                          "else no source")
    bootstrap_env: str = Field(DEFAULT_BOOTSTRAP_ENV, pattern=ENV_NAME, description="variable read when "
                               "bootstrap_servers is not set (the one Scope itself reads)")
    topic: str = Field(DEFAULT_TOPIC, min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username_env: str = Field("KAFKA_SASL_USERNAME", pattern=ENV_NAME)
    sasl_password_env: str = Field("KAFKA_SASL_PASSWORD", pattern=ENV_NAME)
    connect_timeout_s: float = Field(5.0, gt=0, le=120, description="a broker that does not answer in time "
                                     "leaves the run without a source (it still runs)")
    grace_s: float = Field(5.0, ge=0, le=120, description="after the session ends, wait this long for its "
                           "last events; later ones are `late`")
    heartbeat_interval_s: float = Field(10.0, gt=0, description="Scope's stream_heartbeat period")
    ttff_tolerance_s: float = Field(1.0, ge=0, description="playback_ready.ttff_ms may differ from the "
                                    "measured first frame by this much")
    fps_tolerance_ratio: float = Field(0.25, ge=0, le=1, description="heartbeat fps_out may differ from the "
                                       "received fps by this share")
    required: bool = Field(False, description="true: a run whose events are incomplete fails the `events` "
                           "check; false: findings are reported, the verdict is the inference's alone")
