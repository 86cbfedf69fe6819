"""The collector's configuration: a YAML file, every key overridable from the environment.

``LLMSPANS_COLLECTOR__SECTION__KEY`` overrides ``section.key`` of the file, e.g.
``LLMSPANS_COLLECTOR__ASSEMBLY__TRACE_IDLE_S=0.5``; list-valued keys (``exporters``)
take JSON. Environment values win over the file, the file wins over the defaults.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llmspans.core.model import Thresholds

ENV_PREFIX = "LLMSPANS_COLLECTOR__"


class ConfigError(ValueError):
    """A configuration the collector cannot run with; the message is one line.

    Raised by :func:`load_settings` and by the service when it starts (a port in
    use, an exporter file that cannot be opened); the command line exits 2 with it.
    """


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Endpoint(_Section):
    """A listening address, ``host:port``."""

    endpoint: str = Field(description="host:port to listen on")

    @field_validator("endpoint")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_host_port(value)
        return value


class Receivers(_Section):
    grpc: Endpoint | None = Field(
        default_factory=lambda: Endpoint(endpoint="127.0.0.1:4317"),
        description="OTLP/gRPC receiver; null disables it",
    )
    http: Endpoint | None = Field(
        default_factory=lambda: Endpoint(endpoint="127.0.0.1:4318"),
        description="OTLP/HTTP receiver (POST /v1/traces); null disables it",
    )


class OtlpMetrics(_Section):
    endpoint: str | None = Field(
        default=None,
        description="OTLP metrics endpoint (http: full URL ending in /v1/metrics; grpc: host:port)",
    )
    protocol: Literal["http", "grpc"] = "http"
    interval_s: float = Field(default=10.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)


class Metrics(_Section):
    prometheus: Endpoint | None = Field(
        default_factory=lambda: Endpoint(endpoint="127.0.0.1:9464"),
        description="GET /metrics, /healthz, /readyz; null disables the server",
    )
    otlp: OtlpMetrics = Field(default_factory=OtlpMetrics)
    max_pipelines: int = Field(
        default=50, ge=1, description="pipeline label values beyond this become 'other'"
    )
    ece_window: int = Field(
        default=1000, ge=1, description="runs per pipeline in the llmspans_calibration_ece window"
    )
    pipelines: list[str] = Field(
        default_factory=list,
        description="pipeline names that always keep their label and never use up one of "
        "the max_pipelines slots (a flood of junk names cannot push them into `other`)",
    )
    max_segments: int = Field(
        default=20, ge=1, description="distinct segment label values per pipeline; later `other`"
    )
    segments: list[str] = Field(
        default_factory=list,
        description="segment names that always keep their label and never use up a slot",
    )
    service_instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        description="service.instance.id on pushed metrics (one per replica)",
    )


class Assembly(_Section):
    trace_idle_s: float = Field(default=2.0, gt=0)
    trace_timeout_s: float = Field(default=60.0, gt=0)
    max_inflight_spans: int = Field(default=1_000_000, ge=1)
    max_trace_spans: int = Field(
        default=10_000,
        ge=1,
        description="spans of one trace kept for attribution; later ones are forwarded "
        "but not attributed (counted in llmspans_collector_spans_truncated_total)",
    )
    finalized_cache_size: int = Field(default=100_000, ge=0)
    sweep_interval_s: float = Field(
        default=0.1, gt=0, description="how often idle and timed-out traces are finalised"
    )

    @model_validator(mode="after")
    def _timeout_after_idle(self) -> Assembly:
        if self.trace_timeout_s < self.trace_idle_s:
            raise ValueError("trace_timeout_s must not be smaller than trace_idle_s")
        return self


MiB = 1024 * 1024

#: Shares of ``max_memory_bytes`` for the budgets left at 0 (receive, queue, in flight).
BUDGET_SHARES: Final = {"receive": 0.25, "queue": 0.35, "inflight": 0.40}


class Limits(_Section):
    """Per-request and memory bounds (docs/collector.md, "Memory model").

    ``max_memory_bytes`` is one total shared by three byte budgets: request bodies
    being received and decoded (``max_receive_bytes``), what waits in the exporter
    queues (``max_queue_bytes``, split evenly between the exporters) and what is held
    for assembly (``max_inflight_bytes``). A budget left at 0 takes its share of the
    total (:data:`BUDGET_SHARES`); after validation every budget holds its value.
    """

    max_request_bytes: int = Field(default=64 * MiB, ge=1024)
    retry_after_s: float = Field(
        default=1.0, gt=0, description="Retry-After / RetryInfo delay suggested under backpressure"
    )
    max_memory_bytes: int = Field(
        default=384 * MiB, ge=4 * MiB, description="total of the three byte budgets"
    )
    max_receive_bytes: int = Field(
        default=0, ge=0, description="request bodies being received and decoded; 0: 25 %"
    )
    max_queue_bytes: int = Field(
        default=0, ge=0, description="serialised spans in all exporter queues; 0: 35 %"
    )
    max_inflight_bytes: int = Field(
        default=0, ge=0, description="spans held for assembly, as estimated; 0: 40 %"
    )
    max_ids_per_span: int = Field(
        default=10_000,
        ge=1,
        description="document ids read from one span attribute; the rest are ignored and counted",
    )

    @model_validator(mode="after")
    def _budgets(self) -> Limits:
        total = self.max_memory_bytes
        if not self.max_receive_bytes:
            self.max_receive_bytes = int(total * BUDGET_SHARES["receive"])
        if not self.max_queue_bytes:
            self.max_queue_bytes = int(total * BUDGET_SHARES["queue"])
        if not self.max_inflight_bytes:
            self.max_inflight_bytes = int(total * BUDGET_SHARES["inflight"])
        used = self.max_receive_bytes + self.max_queue_bytes + self.max_inflight_bytes
        if used > total:
            raise ValueError(
                f"max_receive_bytes + max_queue_bytes + max_inflight_bytes ({used}) "
                f"exceed max_memory_bytes ({total})"
            )
        return self

    @property
    def request_limit(self) -> int:
        """The largest body taken: ``max_request_bytes``, or the receive budget if smaller."""
        return min(self.max_request_bytes, self.max_receive_bytes)


class Connections(_Section):
    """Bounds on the connections of each listener (both receivers, the metrics server)."""

    max_connections: int = Field(
        default=256, ge=1, description="open connections per listener; more are closed at once"
    )
    max_streams: int = Field(
        default=64, ge=1, description="gRPC calls in progress at once (over all connections)"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="from connecting, or the first byte, to a whole header"
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="longest time to receive a whole request body"
    )
    idle_timeout_s: float = Field(
        default=60.0, gt=0, description="an idle keep-alive connection is closed after this"
    )


class Attribution(_Section):
    min_score: float | None = None
    min_citation_precision: float = Field(default=1.0, ge=0.0, le=1.0)

    def thresholds(self) -> Thresholds:
        return Thresholds(
            min_score=self.min_score, min_citation_precision=self.min_citation_precision
        )


class _ExporterBase(_Section):
    name: str | None = Field(default=None, description="label in the collector's own metrics")
    queue_size: int = Field(default=100_000, ge=1, description="spans held for this exporter")


class OtlpExporter(_ExporterBase):
    protocol: Literal["http", "grpc"]
    endpoint: str = Field(description="http: full URL (…/v1/traces); grpc: host:port or URL")
    headers: dict[str, str] = Field(default_factory=dict)
    compression: Literal["none", "gzip"] = "none"
    insecure: bool = Field(default=True, description="grpc only: plaintext instead of TLS")
    timeout_s: float = Field(default=10.0, gt=0)
    retry_max_elapsed_s: float = Field(default=60.0, ge=0)
    concurrency: int = Field(default=2, ge=1)
    max_batch_spans: int = Field(default=8192, ge=1)


class FileExporter(_ExporterBase):
    protocol: Literal["file"]
    path: Path


ExporterConfig = Annotated[OtlpExporter | FileExporter, Field(discriminator="protocol")]


class Auth(_Section):
    bearer_token: str | None = Field(
        default=None, description="when set, both receivers require 'Authorization: Bearer TOKEN'"
    )

    @field_validator("bearer_token")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        # An empty token would let "Authorization: Bearer " through: refused, so
        # that a variable left unset in a template cannot turn authentication off.
        if value is not None and not value.strip():
            raise ValueError("is empty: set a token, or null to turn authentication off")
        if value is not None and value != value.strip():
            raise ValueError("has leading or trailing white space")
        return value


class Tls(_Section):
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both_or_none(self) -> Tls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls needs both cert_file and key_file, or neither")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class Shutdown(_Section):
    timeout_s: float = Field(default=30.0, gt=0, description="longest wait to flush on SIGTERM")


class LLMJudgeEntry(_Section):
    """An LLM judge over an OpenAI-compatible endpoint (docs/evaluation.md)."""

    base_url: str
    model: str
    api_key_env: str = Field(default="OPENAI_API_KEY", description="variable holding the key")
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=2, ge=0)
    max_documents: int = Field(default=20, ge=1, description="documents sent per run")


class Evaluation(_Section):
    """Continuous evaluation of sampled runs (docs/evaluation.md); off without evaluators."""

    evaluators: list[str | LLMJudgeEntry] = Field(
        default_factory=list, description="package.module:function strings or LLM judges"
    )
    concurrency: int = Field(default=4, ge=1, description="evaluator calls at once")
    queue_size: int = Field(default=1000, ge=1, description="sampled runs waiting at most")
    timeout_s: float = Field(default=60.0, gt=0, description="longest evaluator call")
    calls_per_minute: float | None = Field(default=None, gt=0)
    usd_per_hour: float | None = Field(default=None, ge=0)
    forward_content: bool = Field(
        default=False, description="forward sampled runs' content to the exporters (else stripped)"
    )


class CollectorSettings(BaseSettings):
    """The whole configuration (collector.example.yaml documents every key)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    receivers: Receivers = Field(default_factory=Receivers)
    metrics: Metrics = Field(default_factory=Metrics)
    assembly: Assembly = Field(default_factory=Assembly)
    limits: Limits = Field(default_factory=Limits)
    connections: Connections = Field(default_factory=Connections)
    attribution: Attribution = Field(default_factory=Attribution)
    exporters: list[ExporterConfig] = Field(default_factory=list)
    auth: Auth = Field(default_factory=Auth)
    tls: Tls = Field(default_factory=Tls)
    shutdown: Shutdown = Field(default_factory=Shutdown)
    evaluation: Evaluation = Field(default_factory=Evaluation)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's content arrives as init arguments; the environment overrides it.
        return (env_settings, init_settings)


def load_settings(path: str | Path | None = None) -> CollectorSettings:
    """Read the YAML file at ``path`` (if any), then apply environment overrides.

    Relative paths in the configuration (the file exporter's ``path``, the TLS
    files) are resolved against the directory of the file (the working directory
    when there is none). Every problem raises :class:`ConfigError` with a one-line
    message.
    """
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        base = Path(path).resolve().parent
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read: {_reason(error)}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {_yaml_problem(error)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the configuration must be a YAML mapping")
        data = loaded
    try:
        settings = CollectorSettings(**data)
    except ValidationError as error:
        raise ConfigError(_validation_problems(error)) from None
    except ValueError as error:  # an environment value pydantic-settings could not parse
        raise ConfigError(" ".join(str(error).split())) from None
    _resolve_paths(settings, base)
    return settings


def _resolve_paths(settings: CollectorSettings, base: Path) -> None:
    for exporter in settings.exporters:
        if isinstance(exporter, FileExporter) and not exporter.path.is_absolute():
            exporter.path = base / exporter.path
    tls = settings.tls
    if tls.cert_file is not None and not tls.cert_file.is_absolute():
        tls.cert_file = base / tls.cert_file
    if tls.key_file is not None and not tls.key_file.is_absolute():
        tls.key_file = base / tls.key_file


def _reason(error: Exception) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())


def _validation_problems(error: ValidationError) -> str:
    """Every problem pydantic found, as ``section.key: message`` on one line."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "configuration"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def split_host_port(endpoint: str) -> tuple[str, int]:
    """``"127.0.0.1:4317"`` -> ``("127.0.0.1", 4317)``; ``"[::1]:4317"`` works too."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r} is not host:port")
    if int(port) > 65535:
        raise ValueError(f"endpoint {endpoint!r}: port {port} is above 65535")
    return host.strip("[]") or "0.0.0.0", int(port)
