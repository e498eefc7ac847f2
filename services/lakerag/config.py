"""One settings object, read from the environment.

Every service and job builds its configuration here and nowhere else. Names are
``LAKERAG_*`` plus the standard ``AWS_*`` and ``GEMINI_API_KEY``. Defaults are
the embedded, offline mode: a local directory for the store, Spark local mode,
the packaged MiniLM model, the extractive answerer.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PRODUCTION_MODEL = "BAAI/bge-large-en-v1.5"
SEARCH_MODES = ("dense", "lexical", "hybrid")
ENCODERS = ("auto", "onnx", "torch")
FUSION_RULES = ("adaptive", "fixed")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which variable to set."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {value!r}")


@dataclass(frozen=True)
class Settings:
    # Where everything lives: raw/, lake/ and index/ under one root.
    store_uri: str = "file://./local_data"
    # Spark
    spark_master: str = "local[*]"
    max_file_bytes: int = 50 * 1024 * 1024
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 40
    # Embeddings and index
    embedding_model: str = PACKAGED_MODEL
    model_cache_dir: str = ""
    offline: bool = False
    # onnx: ONNX Runtime, no torch (an export in the model cache); torch: sentence-transformers;
    # auto: onnx when an export exists or torch is here to make one, else torch.
    encoder: str = "auto"
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
    # Serving
    host: str = "127.0.0.1"
    port: int = 8000
    index_dir: str = "./.lakerag/index"
    index_poll_seconds: float = 30.0
    api_key: str = field(default="", repr=False)
    max_upload_bytes: int = 50 * 1024 * 1024
    min_score: float = -1.0  # <0: the model's own default cut-off
    relative_score: float = -1.0
    # Retrieval: dense | lexical | hybrid (weighted reciprocal-rank fusion; see docs/retrieval.md)
    search_mode: str = "hybrid"
    fusion: str = "adaptive"  # adaptive: per-query weights (lakerag.adaptive); fixed: the two weights below
    fusion_dense_weight: float = 1.0
    fusion_lexical_weight: float = 0.3
    fusion_rrf_k: float = 60.0
    rerank_model: str = ""  # a sentence-transformers CrossEncoder name or directory; empty = off
    rerank_candidates: int = 20
    # LLM
    gemini_api_key: str = field(default="", repr=False)
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str = ""
    llm_timeout_seconds: float = 30.0
    # S3 (only read when store_uri is s3://); credentials come from the AWS chain.
    aws_region: str = ""
    aws_endpoint_url: str = ""
    # Which entry point is validating (api needs more than a batch job).
    log_level: str = "INFO"

    @property
    def is_s3(self) -> bool:
        return self.store_uri.startswith("s3://")


# env var -> (field, parser). One table, so `config check` and from_env agree.
_ENV: dict[str, tuple[str, type]] = {
    "LAKERAG_STORE_URI": ("store_uri", str),
    "LAKERAG_SPARK_MASTER": ("spark_master", str),
    "LAKERAG_MAX_FILE_BYTES": ("max_file_bytes", int),
    "LAKERAG_CHUNK_TOKENS": ("chunk_tokens", int),
    "LAKERAG_CHUNK_OVERLAP_TOKENS": ("chunk_overlap_tokens", int),
    "LAKERAG_EMBEDDING_MODEL": ("embedding_model", str),
    "LAKERAG_MODEL_CACHE_DIR": ("model_cache_dir", str),
    "LAKERAG_OFFLINE": ("offline", bool),
    "LAKERAG_ENCODER": ("encoder", str),
    "LAKERAG_EMBED_BATCH_SIZE": ("embed_batch_size", int),
    "LAKERAG_ANN_THRESHOLD": ("ann_threshold", int),
    "LAKERAG_IVF_THRESHOLD": ("ivf_threshold", int),
    "LAKERAG_ANN_RECALL_TARGET": ("ann_recall_target", float),
    "LAKERAG_INDEX_KEEP_VERSIONS": ("index_keep_versions", int),
    "LAKERAG_WATCH_POLL_SECONDS": ("watch_poll_seconds", float),
    "LAKERAG_WATCH_DEBOUNCE_SECONDS": ("watch_debounce_seconds", float),
    "LAKERAG_REPLAY_CACHE_VERSIONS": ("replay_cache_versions", int),
    "LAKERAG_VACUUM_MIN_HOURS": ("vacuum_min_hours", int),
    "LAKERAG_HOST": ("host", str),
    "LAKERAG_PORT": ("port", int),
    "LAKERAG_INDEX_DIR": ("index_dir", str),
    "LAKERAG_INDEX_POLL_SECONDS": ("index_poll_seconds", float),
    "LAKERAG_API_KEY": ("api_key", str),
    "LAKERAG_MAX_UPLOAD_BYTES": ("max_upload_bytes", int),
    "LAKERAG_MIN_SCORE": ("min_score", float),
    "LAKERAG_RELATIVE_SCORE": ("relative_score", float),
    "LAKERAG_SEARCH_MODE": ("search_mode", str),
    "LAKERAG_FUSION": ("fusion", str),
    "LAKERAG_FUSION_DENSE_WEIGHT": ("fusion_dense_weight", float),
    "LAKERAG_FUSION_LEXICAL_WEIGHT": ("fusion_lexical_weight", float),
    "LAKERAG_FUSION_RRF_K": ("fusion_rrf_k", float),
    "LAKERAG_RERANK_MODEL": ("rerank_model", str),
    "LAKERAG_RERANK_CANDIDATES": ("rerank_candidates", int),
    "GEMINI_API_KEY": ("gemini_api_key", str),
    "LAKERAG_GEMINI_MODEL": ("gemini_model", str),
    "LAKERAG_GEMINI_BASE_URL": ("gemini_base_url", str),
    "LAKERAG_LLM_TIMEOUT_SECONDS": ("llm_timeout_seconds", float),
    "AWS_REGION": ("aws_region", str),
    "AWS_ENDPOINT_URL": ("aws_endpoint_url", str),
    "LAKERAG_LOG_LEVEL": ("log_level", str),
}
SECRET_VARS = {"LAKERAG_API_KEY", "GEMINI_API_KEY"}


def from_env(env: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Build Settings from ``env`` (default ``os.environ``); raise ConfigError on bad values."""
    env = os.environ if env is None else env
    values: dict = {}
    errors = []
    for var, (name, kind) in _ENV.items():
        if var not in env:
            continue
        raw = env[var]
        try:
            values[name] = _bool(raw) if kind is bool else kind(raw)
        except ValueError as exc:
            errors.append(f"{var}={raw!r} is not a valid {kind.__name__}: {exc}")
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    values.update(overrides)
    settings = Settings(**values)
    problems = validate(settings)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return settings


def validate(settings: Settings) -> list[str]:
    """Problems that make the settings unusable, each naming the variable to fix."""
    problems = []
    if not settings.store_uri.startswith(("file://", "s3://")):
        problems.append(
            f"LAKERAG_STORE_URI={settings.store_uri!r}: use file://DIR (local) or s3://BUCKET[/PREFIX]"
        )
    if settings.is_s3 and not settings.store_uri[5:].strip("/"):
        problems.append("LAKERAG_STORE_URI: s3:// needs a bucket name, e.g. s3://my-bucket/lakerag")
    if settings.chunk_tokens < 16:
        problems.append("LAKERAG_CHUNK_TOKENS must be at least 16")
    if not 0 <= settings.chunk_overlap_tokens < settings.chunk_tokens:
        problems.append("LAKERAG_CHUNK_OVERLAP_TOKENS must be >= 0 and smaller than LAKERAG_CHUNK_TOKENS")
    if settings.max_file_bytes <= 0 or settings.max_upload_bytes <= 0:
        problems.append("LAKERAG_MAX_FILE_BYTES and LAKERAG_MAX_UPLOAD_BYTES must be positive")
    if not 0 < settings.ann_recall_target <= 1:
        problems.append("LAKERAG_ANN_RECALL_TARGET must be in (0, 1], e.g. 0.95")
    if settings.index_keep_versions < 1:
        problems.append("LAKERAG_INDEX_KEEP_VERSIONS must be at least 1")
    if settings.watch_poll_seconds <= 0 or settings.watch_debounce_seconds < 0:
        problems.append("LAKERAG_WATCH_POLL_SECONDS must be > 0 and LAKERAG_WATCH_DEBOUNCE_SECONDS >= 0")
    if settings.vacuum_min_hours < 0:
        problems.append("LAKERAG_VACUUM_MIN_HOURS must be >= 0 (168, Delta's default, is the usual value)")
    if settings.replay_cache_versions < 1:
        problems.append("LAKERAG_REPLAY_CACHE_VERSIONS must be at least 1")
    if not 1 <= settings.port <= 65535:
        problems.append("LAKERAG_PORT must be between 1 and 65535")
    if settings.search_mode not in SEARCH_MODES:
        problems.append(f"LAKERAG_SEARCH_MODE={settings.search_mode!r}: use one of {', '.join(SEARCH_MODES)}")
    if settings.fusion not in FUSION_RULES:
        problems.append(f"LAKERAG_FUSION={settings.fusion!r}: use one of {', '.join(FUSION_RULES)}")
    if settings.fusion_dense_weight < 0 or settings.fusion_lexical_weight < 0 or \
            settings.fusion_dense_weight + settings.fusion_lexical_weight <= 0:
        problems.append("LAKERAG_FUSION_DENSE_WEIGHT and LAKERAG_FUSION_LEXICAL_WEIGHT must be >= 0, not both 0")
    if settings.fusion_rrf_k < 0:
        problems.append("LAKERAG_FUSION_RRF_K must be >= 0 (60 is the usual value)")
    if settings.encoder not in ENCODERS:
        problems.append(f"LAKERAG_ENCODER={settings.encoder!r}: use one of {', '.join(ENCODERS)}")
    if settings.rerank_candidates < 1:
        problems.append("LAKERAG_RERANK_CANDIDATES must be at least 1")
    return problems


def report(env: Mapping[str, str] | None = None, role: str = "all") -> tuple[list[str], bool]:
    """Lines for ``lakerag config check`` and whether the configuration is usable.

    ``role`` adds what a given entry point needs: ``api`` on S3 needs credentials
    or a role the AWS chain can find; nothing else is strictly required.
    """
    env = os.environ if env is None else env
    lines: list[str] = []
    ok = True
    try:
        settings = from_env(env)
    except ConfigError as exc:
        return [f"ERROR {exc}"], False
    for var, (name, _) in _ENV.items():
        value = getattr(settings, name)
        origin = "set" if var in env else "default"
        shown = "***" if var in SECRET_VARS and value else repr(value)
        lines.append(f"  {var:32} {shown:40} ({origin})")
    if settings.is_s3:
        has_keys = bool(env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))
        has_chain = any(
            env.get(v) for v in ("AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        )
        if not (has_keys or has_chain):
            lines.append(
                "  WARN  s3 store but no AWS credentials in the environment: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an IAM role (IRSA)"
            )
        if not settings.aws_region:
            lines.append("  MISSING AWS_REGION: the s3 store needs a region (e.g. AWS_REGION=us-east-1)")
            ok = False
    if role in {"api", "all"}:
        lines.append(
            "  LLM: Gemini " + ("(GEMINI_API_KEY set)" if settings.gemini_api_key
                                else "off; answers are extractive (set GEMINI_API_KEY to use Gemini)")
        )
        if not settings.api_key:
            lines.append("  NOTE LAKERAG_API_KEY unset: uploads, deletes and /admin/reload are open")
    return lines, ok


def as_dict(settings: Settings) -> dict:
    """Settings without secrets, for logs and /index."""
    data = dataclasses.asdict(settings)
    for var in SECRET_VARS:
        name = _ENV[var][0]
        data[name] = "***" if data[name] else ""
    return data
