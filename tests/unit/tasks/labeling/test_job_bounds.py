"""Job inputs are bounded before anything is stored, and manifest entries stay within the
roots the job allows."""

import pytest
from pydantic import ValidationError

from autolabel.storage.errors import FormatError
from autolabel.storage.manifest import ManifestEntry
from autolabel.tasks.labeling.job import MAX_CATEGORIES, MAX_NAME_CHARS, LabelJob
from autolabel.tasks.labeling.sources import allowed_url


def job(**fields: object) -> LabelJob:
    return LabelJob.model_validate({"source": "s3://bucket/raw/", "dataset": "d", **fields})


def test_name_length_is_the_database_column_length() -> None:
    assert MAX_NAME_CHARS == 200
    assert job(prompts=["c" * 200]).prompts == ["c" * 200]
    with pytest.raises(ValidationError, match="at most 200 characters, got 201"):
        job(prompts=["c" * 201])
    with pytest.raises(ValidationError, match="each synonym to have at most 200"):
        job(prompts=["car"], synonyms={"car": ["s" * 201]})


def test_category_and_phrase_counts_are_bounded() -> None:
    names = [f"thing {i}" for i in range(MAX_CATEGORIES)]
    assert len(job(prompts=names).prompts) == MAX_CATEGORIES
    with pytest.raises(ValidationError, match=f"at most {MAX_CATEGORIES} categories, got 301"):
        job(prompts=[*names, "one more"])
    synonyms = {name: [f"{name} alias {k}" for k in range(2)] for name in names[:200]}
    with pytest.raises(ValidationError, match="at most 600 phrases"):
        job(prompts=names[:250], synonyms=synonyms)


@pytest.mark.parametrize("source", ["ftp://host/images", "s3://", "http://example.com/x"])
def test_sources_and_roots_must_be_stores(source: str) -> None:
    with pytest.raises(ValidationError, match="source"):
        job(source=source, prompts=["cat"])
    with pytest.raises(ValidationError, match="allowed_roots"):
        job(prompts=["cat"], allowed_roots=[source])


@pytest.mark.parametrize(
    "url",
    [
        "s3://other-bucket/raw/a.jpg",
        "s3://bucket/rawx/a.jpg",  # a sibling prefix, not below the source
        "file:///etc/passwd",
        "file:///data/images/a.jpg",
    ],
)
def test_manifest_urls_outside_the_allowed_roots_are_refused(url: str) -> None:
    with pytest.raises(FormatError, match=f"manifest m.txt line 3: {url} is outside"):
        allowed_url(job(prompts=["cat"]), ManifestEntry(3, url=url), "m.txt")


def test_manifest_keys_and_allowed_roots_are_accepted() -> None:
    roots = ["s3://other-bucket/raw/", "file:///data/images"]
    allowing = job(prompts=["cat"], allowed_roots=roots)
    assert allowed_url(allowing, ManifestEntry(1, key="a/b.jpg"), "m") == "s3://bucket/raw/a/b.jpg"
    for url in ("s3://bucket/raw/x.png", "s3://other-bucket/raw/a.jpg", "file:///data/images/a"):
        assert allowed_url(allowing, ManifestEntry(2, url=url), "m") == url
    with pytest.raises(FormatError, match=r"allowed roots \['s3://other-bucket/raw/'"):
        allowed_url(allowing, ManifestEntry(4, url="file:///etc/passwd"), "m")
