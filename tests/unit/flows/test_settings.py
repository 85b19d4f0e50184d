"""Settings: environment parsing, embedded defaults, and one clear error per bad value."""

from pathlib import Path

import pytest

from autolabel.flows.errors import ConfigError
from autolabel.flows.settings import Settings, load_settings


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
    assert settings.device == "auto"
    assert settings.prefect_api == "ephemeral"


def test_user_facing_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLABEL_DATABASE_URL", "postgresql+psycopg://u@db:5432/labels")
    monkeypatch.setenv("AUTOLABEL_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AUTOLABEL_WEIGHTS_DIR", "/models")
    monkeypatch.setenv("AUTOLABEL_DEVICE", "cuda:1")
    monkeypatch.setenv("AUTOLABEL_STORAGE_URL", "s3://bucket/raw")
    monkeypatch.setenv("AUTOLABEL_S3_PATH_STYLE", "true")
    settings = load_settings()
    assert settings.resolved_database_url == "postgresql+psycopg://u@db:5432/labels"
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.resolved_weights_dir == Path("/models")
    assert settings.device == "cuda:1"
    assert settings.resolved_storage_url == "s3://bucket/raw"
    assert settings.s3_path_style is True


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "AUTOLABEL_DEVICE=cpu\nAUTOLABEL_SEGMENTER=efficientvit-sam-xl1\n"
    )
    settings = load_settings()
    assert settings.device == "cpu"
    assert settings.segmenter == "efficientvit-sam-xl1"


def test_password_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLABEL_DATABASE_PASSWORD", "hunter2-secret")
    settings = load_settings()
    assert settings.database_password is not None
    assert settings.database_password.get_secret_value() == "hunter2-secret"
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AUTOLABEL_STORAGE_URL", "ftp://host/images", "scheme file or s3, got scheme 'ftp'"),
        ("AUTOLABEL_STORAGE_URL", "/no/scheme", "got scheme '(none)'"),
        ("AUTOLABEL_STORAGE_URL", "s3:///prefix-only", "no bucket name"),
        ("AUTOLABEL_DATABASE_URL", "mysql://u@h/db", "got scheme 'mysql'"),
        ("AUTOLABEL_DEVICE", "gpu0", "expected auto, cpu, cuda or cuda:N, got 'gpu0'"),
        ("AUTOLABEL_PREFECT_API", "cloud", "AUTOLABEL_PREFECT_API='cloud'"),
        ("AUTOLABEL_S3_PATH_STYLE", "maybe", "AUTOLABEL_S3_PATH_STYLE='maybe'"),
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


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.device = "cpu"  # type: ignore[misc]
