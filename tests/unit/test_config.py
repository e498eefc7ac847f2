"""Settings from the environment, their validation, and `lakerag config check`."""

from __future__ import annotations

import pytest
from lakerag import cli, config
from lakerag.config import ConfigError, Settings, from_env, report


def test_defaults_are_the_embedded_offline_mode():
    settings = from_env({})
    assert settings == Settings()
    assert settings.store_uri == "file://./local_data" and settings.spark_master == "local[*]"
    assert not settings.is_s3 and settings.embedding_model == config.PACKAGED_MODEL


def test_environment_values_are_parsed():
    settings = from_env({"LAKERAG_STORE_URI": "s3://bucket/pre", "LAKERAG_CHUNK_TOKENS": "300",
                         "LAKERAG_CHUNK_OVERLAP_TOKENS": "50", "LAKERAG_OFFLINE": "yes",
                         "LAKERAG_INDEX_POLL_SECONDS": "2.5", "LAKERAG_SPARK_MASTER": "spark://m:7077",
                         "LAKERAG_MAX_FILE_BYTES": "1024", "AWS_REGION": "eu-west-1"})
    assert settings.is_s3 and settings.chunk_tokens == 300 and settings.chunk_overlap_tokens == 50
    assert settings.offline is True and settings.index_poll_seconds == 2.5
    assert settings.spark_master == "spark://m:7077" and settings.max_file_bytes == 1024
    assert from_env({"LAKERAG_OFFLINE": "0"}).offline is False


@pytest.mark.parametrize(("env", "names"), [
    ({"LAKERAG_PORT": "eighty"}, "LAKERAG_PORT"),
    ({"LAKERAG_OFFLINE": "maybe"}, "LAKERAG_OFFLINE"),
    ({"LAKERAG_STORE_URI": "gs://bucket"}, "LAKERAG_STORE_URI"),
    ({"LAKERAG_STORE_URI": "s3://"}, "bucket name"),
    # A path, as people type one: the URI it means, spelt out.
    ({"LAKERAG_STORE_URI": "/data/lake"}, "LAKERAG_STORE_URI='/data/lake': .* file:///data/lake"),
    ({"LAKERAG_CHUNK_TOKENS": "8"}, "LAKERAG_CHUNK_TOKENS"),
    ({"LAKERAG_CHUNK_TOKENS": "100", "LAKERAG_CHUNK_OVERLAP_TOKENS": "100"}, "LAKERAG_CHUNK_OVERLAP_TOKENS"),
    ({"LAKERAG_MAX_FILE_BYTES": "0"}, "LAKERAG_MAX_FILE_BYTES"),
    ({"LAKERAG_MAX_CHUNKS_PER_DOCUMENT": "0"}, "LAKERAG_MAX_CHUNKS_PER_DOCUMENT"),
    ({"LAKERAG_PORT": "70000"}, "LAKERAG_PORT"),
    # 0 failed every query with "range() arg 3 must not be zero"; -5 encoded nothing (zero vectors).
    ({"LAKERAG_EMBED_BATCH_SIZE": "0"}, "LAKERAG_EMBED_BATCH_SIZE must be at least 1"),
    ({"LAKERAG_EMBED_BATCH_SIZE": "-5"}, "LAKERAG_EMBED_BATCH_SIZE must be at least 1"),
    # Spark refused it only after its JVM started, with a Java exception and a py4j error after it.
    ({"LAKERAG_SPARK_MASTER": "spark-master:7077"}, "LAKERAG_SPARK_MASTER='spark-master:7077': use local"),
    # delta-rs decodes a table path: "%41" read as "A", and the first run failed with "File not found".
    ({"LAKERAG_STORE_URI": "file:///data/lake%41"}, "LAKERAG_STORE_URI='file:///data/lake%41': .*'%41'"),
    ({"LAKERAG_STORE_URI": "s3://bucket/a%20b"}, "LAKERAG_STORE_URI='s3://bucket/a%20b': .*'%20'"),
    # boto3 refuses an endpoint without a scheme deep in a request: GET /documents answered 500.
    ({"AWS_ENDPOINT_URL": "localhost:9000"}, "AWS_ENDPOINT_URL='localhost:9000': .*http://localhost:9000"),
    ({"LAKERAG_LOG_LEVEL": "LOUD"}, "LAKERAG_LOG_LEVEL='LOUD': use one of CRITICAL, ERROR, WARNING, INFO, DEBUG"),
    # An HTTP header carries ASCII, its ends stripped: the right key was refused with 403.
    ({"LAKERAG_API_KEY": "clé-secrète"}, "LAKERAG_API_KEY .* printable ASCII"),
    ({"LAKERAG_API_KEY": "s3cret\x00"}, "LAKERAG_API_KEY .* printable ASCII"),
])
def test_bad_values_name_the_variable(env, names):
    with pytest.raises(ConfigError, match=names) as raised:
        from_env(env)
    assert env.get("LAKERAG_API_KEY", "\0") not in str(raised.value)  # a secret is never echoed


@pytest.mark.parametrize("master", ["local", "local[*]", "local[4]", "local-cluster[2,1,1024]",
                                    "spark://lakerag-spark-master:7077", "k8s://https://kubernetes:443", "yarn"])
def test_spark_masters_spark_takes_are_accepted(master):
    assert from_env({"LAKERAG_SPARK_MASTER": master}).spark_master == master


def test_keys_ends_are_stripped_as_a_header_values_are():
    """A key from `kubectl create secret --from-file` ends in a newline; the header never does,
    so the right key was refused with 403."""
    settings = from_env({"LAKERAG_API_KEY": " s3cret\n", "GEMINI_API_KEY": "AIza-key\n"})
    assert (settings.api_key, settings.gemini_api_key) == ("s3cret", "AIza-key")


def test_log_levels_are_accepted_in_either_case():
    assert [from_env({"LAKERAG_LOG_LEVEL": level}).log_level for level in ("warning", "DEBUG", "Trace")] == \
        ["warning", "DEBUG", "Trace"]


def test_overrides_win_over_the_environment():
    assert from_env({"LAKERAG_PORT": "9000"}, port=9100).port == 9100


def test_report_masks_secrets_and_flags_missing_s3_region():
    lines, ok = report({"LAKERAG_API_KEY": "s3cret", "GEMINI_API_KEY": "g-key"})
    text = "\n".join(lines)
    assert ok and "s3cret" not in text and "g-key" not in text and "***" in text
    lines, ok = report({"LAKERAG_STORE_URI": "s3://bucket"}, role="batch")
    text = "\n".join(lines)
    assert not ok and "MISSING AWS_REGION" in text and "no AWS credentials" in text
    lines, ok = report({"LAKERAG_STORE_URI": "s3://bucket", "AWS_REGION": "us-east-1",
                        "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, role="batch")
    assert ok and "WARN" not in "\n".join(lines)
    lines, ok = report({"LAKERAG_PORT": "x"})
    assert not ok and lines[0].startswith("ERROR")


def test_repr_never_shows_secrets():
    assert "k1" not in repr(from_env({}, api_key="k1")) and "k2" not in repr(from_env({}, gemini_api_key="k2"))


def test_config_check_exit_codes(monkeypatch, capsys):
    for var in ("LAKERAG_STORE_URI", "LAKERAG_PORT", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    assert cli.main(["config", "check", "--role", "batch"]) == 0
    assert "LAKERAG_STORE_URI" in capsys.readouterr().out
    monkeypatch.setenv("LAKERAG_STORE_URI", "s3://bucket")
    assert cli.main(["config", "check", "--role", "batch"]) == 1
    assert "MISSING AWS_REGION" in capsys.readouterr().out


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles(monkeypatch, capsys, tmp_path):
    """A typo used to leave the default without a word: LAKERAG_STORE_URL served ./local_data."""
    env = {"LAKERAG_STORE_URL": "s3://bucket", "LAKERAG_SERACH_MODE": "dense", "LAKERAG_GEMINI_API_KEY": "k",
           "LAKERAG_NAMESPACE": "lakerag", "LAKERAG_MODEL_CACHE_CLAIM": "models"}  # the last two: the DAG's
    assert config.misspelt(env) == [
        "LAKERAG_GEMINI_API_KEY is not a setting and is ignored: did you mean GEMINI_API_KEY?",
        "LAKERAG_SERACH_MODE is not a setting and is ignored: did you mean LAKERAG_SEARCH_MODE?",
        "LAKERAG_STORE_URL is not a setting and is ignored: did you mean LAKERAG_STORE_URI?"]
    assert config.misspelt({"LAKERAG_STORE_URI": "file:///x", "LAKERAG_IMAGE_TAG": "dev"}) == []
    lines, usable = report(env)
    assert usable and "  WARN  LAKERAG_STORE_URL is not a setting and is ignored: did you mean LAKERAG_STORE_URI?" in lines
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LAKERAG_STORE_URI", f"file://{tmp_path}")
    assert cli.main(["pipeline", "status"]) == 0
    assert "lakerag: WARNING LAKERAG_STORE_URL is not a setting" in capsys.readouterr().err
