"""One settings object, read from the environment (pydantic-settings).

Every service and job builds its configuration here and nowhere else. Names are
``LAKERAG_<FIELD>`` plus the standard ``AWS_REGION``, ``AWS_ENDPOINT_URL`` and
``GEMINI_API_KEY``. Defaults are the embedded, offline mode: a local directory for the
store, Spark local mode, the packaged MiniLM model, the extractive answerer.

Validation lives in one place, ``Settings._check``: a Settings object that exists is
valid. ``Settings()`` is the defaults (plus keyword arguments); ``from_env`` reads an
environment (``os.environ`` unless given).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PRODUCTION_MODEL = "BAAI/bge-large-en-v1.5"
SearchMode = Literal["dense", "lexical", "hybrid"]  # the one definition (API schema, CLI, settings)
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
Encoder = Literal["auto", "onnx", "torch"]  # LAKERAG_ENCODER
ENCODERS: tuple[str, ...] = get_args(Encoder)
FusionRule = Literal["adaptive", "fixed"]  # LAKERAG_FUSION
FUSION_RULES: tuple[str, ...] = get_args(FusionRule)
Role = Literal["api", "batch", "all"]  # which entry point `config check` checks for
# Variables without the LAKERAG_ prefix: field -> variable.
UNPREFIXED = {"gemini_api_key": "GEMINI_API_KEY", "aws_region": "AWS_REGION", "aws_endpoint_url": "AWS_ENDPOINT_URL"}
SECRET_VARS = {"LAKERAG_API_KEY", "GEMINI_API_KEY", "LAKERAG_AIRFLOW_PASSWORD"}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which variable to set."""


def parse_bool(value: str) -> bool:
    """true/false as environment variables and CLI flags spell them (1/0, yes/no, on/off)."""
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {value!r}")



# The environment from_env reads; None: Settings() takes defaults and keyword arguments only.
_environment: ContextVar[Mapping[str, str] | None] = ContextVar("lakerag_environment", default=None)


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of os.environ."""

    def __init__(self, settings_cls, env: Mapping[str, str]):
        self._mapping = env
        super().__init__(settings_cls)

    def _load_env_vars(self):
        return {name.lower(): value for name, value in self._mapping.items() if value != ""}


class Settings(BaseSettings):
    # An empty variable means "unset" (charts render optional values as "").
    model_config = SettingsConfigDict(env_prefix="LAKERAG_", frozen=True, validate_by_name=True, extra="ignore",
                                      env_ignore_empty=True)

    # Where everything lives: raw/, lake/ and index/ under one root.
    store_uri: str = "file://./local_data"
    # Spark
    spark_master: str = "local[*]"
    max_file_bytes: int = 50 * 1024 * 1024
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 40
    # A document with more distinct chunks goes to quarantine (about 8 MB of distinct text:
    # minutes of embedding on CPU); identical windows count once.
    max_chunks_per_document: int = 10_000
    # Embeddings and index
    embedding_model: str = PACKAGED_MODEL
    model_cache_dir: str = ""
    offline: bool = False
    # onnx: ONNX Runtime, no torch (an export in the model cache); torch: sentence-transformers;
    # auto: onnx when an export exists or torch is here to make one, else torch.
    encoder: Encoder = "auto"
    embed_batch_size: int = 64
    ann_threshold: int = 200_000  # above: HNSW
    ivf_threshold: int = 1_000_000  # above: IVF (a fraction of HNSW's memory, minutes to build at 10M)
    ann_recall_target: float = 0.95  # IVF's nprobe is the smallest meeting this recall@10
    index_keep_versions: int = 5
    # Event-driven sync (`lakerag run`, `lakerag pipeline watch`): how often raw/ is listed, and
    # how long it must stay unchanged before a run starts (a burst of uploads makes one run).
    watch_poll_seconds: float = 1.0
    watch_debounce_seconds: float = 0.5
    # Replay (`as_of`): how many retained index versions the API keeps loaded beside the served one.
    replay_cache_versions: int = 2
    # Delta vacuum keeps at least this much history, and always enough for the oldest retained index version.
    vacuum_min_hours: int = 168
    # Event-driven sync in a cluster (docs/freshness.md): after an upload or delete the API records an
    # event on this Airflow asset (Airflow 3 REST API), which the pipeline DAG is scheduled on. Empty URL: off.
    airflow_api_url: str = ""
    airflow_asset_uri: str = "x-lakerag://raw"
    airflow_username: str = ""
    airflow_password: str = Field("", repr=False)
    # > 0: the API also lists raw/ this often and records an event when objects were written straight
    # to the bucket (the polling route); 0: only its own uploads and deletes trigger.
    airflow_poll_seconds: float = 0.0
    # Serving
    host: str = "127.0.0.1"
    port: int = 8000
    index_dir: str = "./.lakerag/index"
    index_poll_seconds: float = 30.0
    # Keys' ends are stripped: a Secret made with `kubectl create secret --from-file` ends in a
    # newline, and an HTTP header's value never does.
    api_key: Annotated[str, AfterValidator(str.strip)] = Field("", repr=False)
    max_upload_bytes: int = 50 * 1024 * 1024
    min_score: float = -1.0  # <0: the model's own default cut-off
    relative_score: float = -1.0
    # Retrieval: dense | lexical | hybrid (weighted reciprocal-rank fusion; see docs/retrieval.md)
    search_mode: SearchMode = "hybrid"
    fusion: FusionRule = "adaptive"  # adaptive: per-query weights (lakerag.adaptive); fixed: the two weights below
    fusion_dense_weight: float = 1.0
    fusion_lexical_weight: float = 0.3
    fusion_rrf_k: float = 60.0
    rerank_model: str = ""  # a sentence-transformers CrossEncoder name or directory; empty = off
    rerank_candidates: int = 20
    # LLM
    gemini_api_key: Annotated[str, AfterValidator(str.strip)] = Field("", repr=False, validation_alias="GEMINI_API_KEY")
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str = ""
    llm_timeout_seconds: float = 30.0
    # When Gemini fails (error, quota, timeout, no text): answer from the sources extractively, the
    # reason in fallback_reason, instead of 502/503/504 (false: the error, for clients that want one).
    llm_fallback: bool = True
    # S3 (only read when store_uri is s3://); credentials come from the AWS chain.
    aws_region: str = Field("", validation_alias="AWS_REGION")
    aws_endpoint_url: str = Field("", validation_alias="AWS_ENDPOINT_URL")
    # Logging
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        env = _environment.get()
        return (init_settings,) if env is None else (init_settings, _MappingSource(settings_cls, env))

    @property
    def is_s3(self) -> bool:
        return self.store_uri.startswith("s3://")

    def replace(self, **changes) -> Settings:
        """A copy with ``changes`` (field names), validated like any other Settings."""
        return type(self).model_validate({**self.model_dump(), **changes})

    def missing(self, role: Role = "all") -> list[str]:
        """What an entry point needs that is not set (valid settings, incomplete for the role)."""
        if self.is_s3 and not self.aws_region:
            return ["AWS_REGION: the s3:// store needs a region, e.g. AWS_REGION=us-east-1"]
        return []

    @model_validator(mode="after")
    def _check(self) -> Settings:
        problems = _problems(self)
        if problems:
            raise ValueError("\n  ".join(problems))
        return self


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def header_safe(value: str) -> bool:
    """Whether an HTTP header can carry ``value`` (printable ASCII): the API key's rule, server and client."""
    return value.isascii() and value.isprintable()


def store_uri_advice(uri: str) -> str:
    """What to write instead of a store URI that is neither file:// nor s3:// (a path, as people type one)."""
    if uri.startswith(("/", "./", "../", "~")):
        return f"use file://{os.path.expanduser(uri)} for that directory (a store is file://DIR or s3://BUCKET[/PREFIX])"
    return "use file://DIR or s3://BUCKET[/PREFIX]"


def _problems(s: Settings) -> list[str]:
    """Values that make the settings unusable, each naming the variable to fix."""
    problems = []
    if not s.store_uri.startswith(("file://", "s3://")):
        problems.append(f"LAKERAG_STORE_URI={s.store_uri!r}: {store_uri_advice(s.store_uri)}")
    if s.log_level.lower() not in LOG_LEVELS:  # uvicorn's names; anything else fails deep in its start-up
        problems.append(f"LAKERAG_LOG_LEVEL={s.log_level!r}: use one of {', '.join(LOG_LEVELS).upper()} "
                        "(either case)")
    if escape := re.search(r"%[0-9A-Fa-f]{2}", s.store_uri):
        problems.append(f"LAKERAG_STORE_URI={s.store_uri!r}: delta-rs reads {escape.group()!r} in a table's path as the "
                        "character it encodes, so the tables would go elsewhere; use a directory or prefix without "
                        "a % escape")
    if s.is_s3 and not s.store_uri[5:].strip("/"):
        problems.append("LAKERAG_STORE_URI: s3:// needs a bucket name, e.g. s3://my-bucket/lakerag")
    if s.chunk_tokens < 16:
        problems.append("LAKERAG_CHUNK_TOKENS must be at least 16")
    if not 0 <= s.chunk_overlap_tokens < s.chunk_tokens:
        problems.append("LAKERAG_CHUNK_OVERLAP_TOKENS must be >= 0 and smaller than LAKERAG_CHUNK_TOKENS")
    if not re.fullmatch(r"local(\[.+\]|-cluster\[.+\])?|(spark|k8s)://.+|yarn", s.spark_master):
        problems.append(f"LAKERAG_SPARK_MASTER={s.spark_master!r}: use local[*], spark://HOST:7077, k8s://URL or "
                        "yarn")
    if s.embed_batch_size < 1:
        problems.append("LAKERAG_EMBED_BATCH_SIZE must be at least 1 (64 is the default)")
    if s.aws_endpoint_url and not s.aws_endpoint_url.startswith(("http://", "https://")):
        problems.append(f"AWS_ENDPOINT_URL={s.aws_endpoint_url!r}: must be an http(s):// URL, e.g. "
                        f"http://{s.aws_endpoint_url.split('://')[-1]} (MinIO, moto), or unset for AWS S3")
    if s.max_chunks_per_document < 1:
        problems.append("LAKERAG_MAX_CHUNKS_PER_DOCUMENT must be at least 1 (10000 is the default)")
    if s.max_file_bytes <= 0 or s.max_upload_bytes <= 0:
        problems.append("LAKERAG_MAX_FILE_BYTES and LAKERAG_MAX_UPLOAD_BYTES must be positive")
    if not 0 < s.ann_recall_target <= 1:
        problems.append("LAKERAG_ANN_RECALL_TARGET must be in (0, 1], e.g. 0.95")
    if s.index_keep_versions < 1:
        problems.append("LAKERAG_INDEX_KEEP_VERSIONS must be at least 1")
    if s.watch_poll_seconds <= 0 or s.watch_debounce_seconds < 0:
        problems.append("LAKERAG_WATCH_POLL_SECONDS must be > 0 and LAKERAG_WATCH_DEBOUNCE_SECONDS >= 0")
    if s.vacuum_min_hours < 0:
        problems.append("LAKERAG_VACUUM_MIN_HOURS must be >= 0 (168, Delta's default, is the usual value)")
    if s.airflow_api_url and not s.airflow_api_url.startswith(("http://", "https://")):
        problems.append(f"LAKERAG_AIRFLOW_API_URL={s.airflow_api_url!r}: must be the http(s):// URL of Airflow's "
                        "api-server, e.g. http://lakerag-airflow-api-server:8080, or unset")
    if bool(s.airflow_username) != bool(s.airflow_password):
        problems.append("LAKERAG_AIRFLOW_USERNAME and LAKERAG_AIRFLOW_PASSWORD go together: set both, or neither "
                        "(an Airflow that needs no login)")
    if s.airflow_poll_seconds < 0 or (s.airflow_poll_seconds and not s.airflow_api_url):
        problems.append("LAKERAG_AIRFLOW_POLL_SECONDS must be >= 0 and needs LAKERAG_AIRFLOW_API_URL (0: off)")
    if s.replay_cache_versions < 1:
        problems.append("LAKERAG_REPLAY_CACHE_VERSIONS must be at least 1")
    if not header_safe(s.api_key):
        problems.append("LAKERAG_API_KEY has a character that is not printable ASCII: an HTTP header cannot carry "
                        "it, so no client could send it; use letters, digits and punctuation (e.g. "
                        "`openssl rand -hex 32`)")
    if not 1 <= s.port <= 65535:
        problems.append("LAKERAG_PORT must be between 1 and 65535")
    if s.fusion_dense_weight < 0 or s.fusion_lexical_weight < 0 or s.fusion_dense_weight + s.fusion_lexical_weight <= 0:
        problems.append("LAKERAG_FUSION_DENSE_WEIGHT and LAKERAG_FUSION_LEXICAL_WEIGHT must be >= 0, not both 0")
    if s.fusion_rrf_k < 0:
        problems.append("LAKERAG_FUSION_RRF_K must be >= 0 (60 is the usual value)")
    if s.rerank_candidates < 1:
        problems.append("LAKERAG_RERANK_CANDIDATES must be at least 1")
    if s.index_poll_seconds <= 0:
        problems.append(f"LAKERAG_INDEX_POLL_SECONDS={s.index_poll_seconds}: must be > 0 (e.g. 30)")
    if s.llm_timeout_seconds <= 0:
        problems.append(f"LAKERAG_LLM_TIMEOUT_SECONDS={s.llm_timeout_seconds}: must be > 0 (e.g. 30)")
    if s.gemini_base_url and not s.gemini_base_url.startswith(("http://", "https://")):
        problems.append(f"LAKERAG_GEMINI_BASE_URL={s.gemini_base_url!r}: must be an http(s):// URL, or unset "
                        "for Google's endpoint")
    if s.gemini_base_url and not s.gemini_api_key:
        problems.append("LAKERAG_GEMINI_BASE_URL is set but GEMINI_API_KEY is not: set the key, or unset the URL "
                        "for extractive answers")
    for var, value in (("LAKERAG_MIN_SCORE", s.min_score), ("LAKERAG_RELATIVE_SCORE", s.relative_score)):
        if value > 1:
            problems.append(f"{var}={value}: cosine cut-offs are at most 1 (negative = the model's default)")
    return problems


def env_var(field: str) -> str:
    return UNPREFIXED.get(field, f"LAKERAG_{field.upper()}")


def _kind(annotation) -> type:
    """The plain type of a field (a Literal's values are strings)."""
    args = get_args(annotation)
    return type(args[0]) if args else annotation


# variable -> (field, type): `config check`, the chart's contract tests and the docs read it.
ENV_VARS: dict[str, tuple[str, type]] = {env_var(name): (name, _kind(field.annotation))
                                         for name, field in Settings.model_fields.items()}


def misspelt(env: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for ``LAKERAG_*`` variables that no setting reads but that look like one that does:
    a typo (``LAKERAG_STORE_URL``) would otherwise leave the default in place without a word. Other
    names (the DAG's ``LAKERAG_NAMESPACE``, ``LAKERAG_IMAGE_TAG``…) are not this close to a setting."""
    env = os.environ if env is None else env
    warnings = []
    for name in sorted(env):
        if not name.startswith("LAKERAG_") or name in ENV_VARS:
            continue
        unprefixed = name.removeprefix("LAKERAG_")  # LAKERAG_GEMINI_API_KEY for GEMINI_API_KEY
        close = [unprefixed] if unprefixed in ENV_VARS else difflib.get_close_matches(name, ENV_VARS, n=1, cutoff=0.9)
        if close:
            warnings.append(f"{name} is not a setting and is ignored: did you mean {close[0]}?")
    return warnings


def from_env(env: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Settings from ``env`` (default ``os.environ``), ``overrides`` winning; ConfigError naming
    each bad variable."""
    env = os.environ if env is None else env
    token = _environment.set(env)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_describe(exc, env))) from None
    finally:
        _environment.reset(token)


def _describe(exc: ValidationError, env: Mapping[str, str]) -> list[str]:
    lines = []
    for error in exc.errors():
        if not error["loc"]:  # Settings._check: its message already names the variables
            lines.append(error["msg"].removeprefix("Value error, "))
            continue
        field = str(error["loc"][0])
        var = field if field in ENV_VARS else env_var(field)
        kind = ENV_VARS.get(var, ("", str))[1].__name__
        shown = "***" if var in SECRET_VARS else repr(error["input"])
        lines.append(f"{var}={shown} is not a valid {kind}: {error['msg']}")
    return lines


def report(env: Mapping[str, str] | None = None, role: Role = "all") -> tuple[list[str], bool]:
    """Lines for ``lakerag config check`` (each variable: value, source; then problems) and
    whether the configuration is usable by ``role``'s entry point."""
    env = os.environ if env is None else env
    try:
        settings = from_env(env)
    except ConfigError as exc:
        return [f"ERROR {exc}"], False
    lines: list[str] = []
    for var, (name, _) in ENV_VARS.items():
        value = getattr(settings, name)
        shown = "***" if var in SECRET_VARS and value else repr(value)
        lines.append(f"  {var:32} {shown:40} ({'set' if var in env else 'default'})")
    if settings.is_s3:
        has_keys = bool(env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))
        has_chain = any(env.get(v) for v in ("AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                                             "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))
        if not (has_keys or has_chain):
            lines.append("  WARN  s3 store but no AWS credentials in the environment: set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an IAM role (IRSA)")
    lines += [f"  WARN  {warning}" for warning in misspelt(env)]
    missing = settings.missing(role)
    lines += [f"  MISSING {problem}" for problem in missing]
    if role in {"api", "all"}:
        lines.append("  LLM: Gemini " + ("(GEMINI_API_KEY set)" if settings.gemini_api_key
                                         else "off; answers are extractive (set GEMINI_API_KEY to use Gemini)"))
        if not settings.api_key:
            lines.append("  NOTE LAKERAG_API_KEY unset: uploads, deletes and /admin/reload are open")
    return lines, not missing
