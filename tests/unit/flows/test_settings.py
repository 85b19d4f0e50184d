"""Settings: environment parsing, embedded defaults, and one clear error per bad value."""

from pathlib import Path

import pytest

from autolabel.flows.errors import ConfigError
from autolabel.flows.resources import resource_config
from autolabel.flows.settings import Settings, load_settings, variable_names
from autolabel.storage.images import DEFAULT_MAX_PIXELS


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AUTOLABEL_* variables or .env file leak in from the machine running the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("AUTOLABEL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_embedded_defaults_live_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOLABEL_HOME", str(tmp_path / "h"))
    settings = load_settings()
    home = (tmp_path / "h").resolve()
    assert settings.resolved_storage_url == (home / "store").as_uri()
    assert settings.resolved_database_url == f"sqlite:///{home / 'autolabel.db'}"
    assert settings.resolved_weights_dir == tmp_path / "h" / "weights"
    assert settings.models.device == "auto"
    assert settings.images.max_pixels == DEFAULT_MAX_PIXELS
    assert settings.prefect_api == "ephemeral"


def test_user_facing_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLABEL_DATABASE__URL", "postgresql+psycopg://u@db:5432/labels")
    monkeypatch.setenv("AUTOLABEL_S3__ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AUTOLABEL_MODELS__WEIGHTS_DIR", "/models")
    monkeypatch.setenv("AUTOLABEL_MODELS__DEVICE", "cuda:1")
    monkeypatch.setenv("AUTOLABEL_STORAGE__URL", "s3://bucket/raw")
    monkeypatch.setenv("AUTOLABEL_S3__PATH_STYLE", "true")
    monkeypatch.setenv("AUTOLABEL_IMAGES__MAX_PIXELS", "1000")
    settings = load_settings()
    assert settings.resolved_database_url == "postgresql+psycopg://u@db:5432/labels"
    assert settings.s3.endpoint_url == "http://minio:9000"
    assert settings.resolved_weights_dir == Path("/models")
    assert settings.models.device == "cuda:1"
    assert settings.resolved_storage_url == "s3://bucket/raw"
    assert settings.s3.path_style is True
    assert settings.images.max_pixels == 1000


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "AUTOLABEL_MODELS__DEVICE=cpu\nAUTOLABEL_MODELS__SEGMENTER=efficientvit-sam-xl1\n"
    )
    settings = load_settings()
    assert settings.models.device == "cpu"
    assert settings.models.segmenter == "efficientvit-sam-xl1"


def test_password_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLABEL_DATABASE__PASSWORD", "hunter2-secret")
    settings = load_settings()
    assert settings.database.password is not None
    assert settings.database.password.get_secret_value() == "hunter2-secret"
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AUTOLABEL_STORAGE__URL", "ftp://host/images", "scheme file or s3, got scheme 'ftp'"),
        ("AUTOLABEL_STORAGE__URL", "/no/scheme", "got scheme '(none)'"),
        ("AUTOLABEL_STORAGE__URL", "s3:///prefix-only", "no bucket name"),
        ("AUTOLABEL_DATABASE__URL", "mysql://u@h/db", "got scheme 'mysql'"),
        ("AUTOLABEL_MODELS__DEVICE", "gpu0", "expected auto, cpu, cuda or cuda:N, got 'gpu0'"),
        ("AUTOLABEL_PREFECT_API", "cloud", "AUTOLABEL_PREFECT_API='cloud'"),
        ("AUTOLABEL_S3__PATH_STYLE", "maybe", "AUTOLABEL_S3__PATH_STYLE='maybe'"),
        ("AUTOLABEL_S3__MAX_ATTEMPTS", "x", "AUTOLABEL_S3__MAX_ATTEMPTS='x': Input should be"),
        ("AUTOLABEL_S3__MAX_ATTEMPTS", "0", "greater than or equal to 1"),
        ("AUTOLABEL_S3__ENDPOINT_URL", "ftp://h", "expected an http(s)://host[:port]"),
        ("AUTOLABEL_IMAGES__MAX_PIXELS", "0", "AUTOLABEL_IMAGES__MAX_PIXELS='0'"),
        ("AUTOLABEL_LABELING__SHARD_RETRY_DELAYS_S", "[5, -1]", "between 0 and 3600 seconds"),
        ("AUTOLABEL_LABELING__SHARD_RETRY_DELAYS_S", "5", "AUTOLABEL_LABELING__SHARD_RETRY_DELAYS"),
    ],
)
def test_bad_value_names_variable_and_expectation(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{variable}=")
    assert expected in message
    assert "\n" not in message


def test_shard_retry_delays_are_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().labeling.shard_retry_delays_s == (5.0, 30.0)
    monkeypatch.setenv("AUTOLABEL_LABELING__SHARD_RETRY_DELAYS_S", "[1, 2.5]")
    assert load_settings().labeling.shard_retry_delays_s == (1.0, 2.5)
    monkeypatch.setenv("AUTOLABEL_LABELING__SHARD_RETRY_DELAYS_S", "[]")
    assert load_settings().labeling.shard_retry_delays_s == ()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.home = Path("/x")  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        settings.models.device = "cpu"  # type: ignore[misc]


def test_nested_s3_options_reach_the_s3_client_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLABEL_S3__CONNECT_TIMEOUT_S", "3")
    monkeypatch.setenv("AUTOLABEL_S3__READ_TIMEOUT_S", "7.5")
    monkeypatch.setenv("AUTOLABEL_S3__MAX_ATTEMPTS", "4")
    monkeypatch.setenv("AUTOLABEL_S3__MULTIPART_CHUNK_BYTES", str(8 * 1024 * 1024))
    monkeypatch.setenv("AUTOLABEL_S3__MAX_CONCURRENCY", "2")
    monkeypatch.setenv("AUTOLABEL_S3__REGION", "eu-west-1")
    monkeypatch.setenv("AUTOLABEL_IMAGES__MAX_PIXELS", "1234")
    monkeypatch.setenv("AUTOLABEL_MODELS__DEVICE", "cpu")
    config = resource_config(load_settings())
    assert config.s3.connect_timeout_s == 3
    assert config.s3.read_timeout_s == 7.5
    assert config.s3.max_attempts == 4
    assert config.s3.multipart_chunk_bytes == 8 * 1024 * 1024
    assert config.s3.max_concurrency == 2
    assert config.s3.region == "eu-west-1"
    assert config.max_image_pixels == 1234
    assert config.device == "cpu"


def test_a_whole_section_may_be_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLABEL_S3", '{"region": "eu-west-1", "max_attempts": 2}')
    settings = load_settings()
    assert (settings.s3.region, settings.s3.max_attempts) == ("eu-west-1", 2)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("AUTOLABEL_DATABASE_URL", "AUTOLABEL_DATABASE__URL"),
        ("AUTOLABEL_DATABASE_PASSWORD", "AUTOLABEL_DATABASE__PASSWORD"),
        ("AUTOLABEL_STORAGE_URL", "AUTOLABEL_STORAGE__URL"),
        ("AUTOLABEL_S3_ENDPOINT_URL", "AUTOLABEL_S3__ENDPOINT_URL"),
        ("AUTOLABEL_S3_PATH_STYLE", "AUTOLABEL_S3__PATH_STYLE"),
        ("AUTOLABEL_S3_MAX_ATTEMPTS", "AUTOLABEL_S3__MAX_ATTEMPTS"),
        ("AUTOLABEL_WEIGHTS_DIR", "AUTOLABEL_MODELS__WEIGHTS_DIR"),
        ("AUTOLABEL_DEVICE", "AUTOLABEL_MODELS__DEVICE"),
        ("AUTOLABEL_SEGMENTER", "AUTOLABEL_MODELS__SEGMENTER"),
        ("AUTOLABEL_DETECTOR", "AUTOLABEL_MODELS__DETECTOR"),
        ("AUTOLABEL_S3__MAX_ATEMPTS", "AUTOLABEL_S3__MAX_ATTEMPTS"),
        ("autolabel_database_url", "AUTOLABEL_DATABASE__URL"),
    ],
)
def test_old_flat_or_misspelt_variable_is_refused_with_the_new_name(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str
) -> None:
    monkeypatch.setenv(old, "postgresql+psycopg://u@db/x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"unknown setting {old.upper()}; did you mean {new}?")
    assert "\n" not in message


def test_unknown_variable_without_a_near_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLABEL_S3__BOGUS", "1")
    with pytest.raises(ConfigError, match=r"^unknown setting AUTOLABEL_S3__BOGUS \("):
        load_settings()


def test_old_variable_in_dotenv_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AUTOLABEL_DATABASE_URL=postgresql+psycopg://u@db/x\n")
    with pytest.raises(ConfigError, match="did you mean AUTOLABEL_DATABASE__URL"):
        load_settings()


def test_tool_variables_are_not_settings_but_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLABEL_CODE_DIR", "/opt/autolabel")
    monkeypatch.setenv("AUTOLABEL_TEST_PG_ADMIN_URL", "postgresql://x@h/db")
    load_settings()


def test_deploy_files_use_only_known_variables() -> None:
    import re

    from autolabel.flows.settings import OTHER_VARIABLES

    known = set(variable_names()) | OTHER_VARIABLES
    deploy = Path(__file__).resolve().parents[3] / "deploy"
    for path in sorted(p for p in deploy.rglob("*") if p.is_file()):
        used = set(re.findall(r"AUTOLABEL_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
        assert used <= known, f"{path.name}: {sorted(used - known)}"
