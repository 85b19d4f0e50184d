"""Image URLs a review tool can open, for images we name by their storage URL.

- `s3://bucket/key`, mode `presigned`: an HTTPS GET URL signed (SigV4) with the S3 client
  settings and the boto3 credential chain, valid for `expiry_seconds` (at most 7 days, the SigV4
  limit). Anyone holding it can read the image until it expires; it is never logged.
- `s3://bucket/key`, mode `s3`: the URL unchanged, for a tool with its own connection to the
  bucket (Label Studio's S3 cloud storage resolves `s3://` URLs of a connected bucket).
- `file:///abs/path`: Label Studio's local-files URL `/data/local-files/?d=<path relative to the
  server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT>`, which needs that root (both modes).

Presigning makes no request; only the signature's clock starts.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

import boto3
from botocore.config import Config

from autolabel.storage.config import S3Config
from autolabel.storage.errors import FormatError, StorageConfigError
from autolabel.storage.s3 import botocore_config
from autolabel.storage.urls import parse_store_root, split_object_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ImageUrlMode = Literal["presigned", "s3"]
MAX_EXPIRY_SECONDS = 7 * 24 * 3600
LOCAL_FILES_PATH = "/data/local-files/?d="


def local_files_url(storage_url: str, *, document_root: Path) -> str:
    """Label Studio's local-files URL of a `file://` image below `document_root`.

    Raises:
        StorageConfigError: The image is not below `document_root`.
    """
    path = parse_store_root(storage_url).path
    root = document_root.expanduser().absolute()
    try:
        relative = path.relative_to(root)
    except ValueError:
        raise StorageConfigError(
            f"expected images below the local-files document root {root}, got {path}"
        ) from None
    return LOCAL_FILES_PATH + quote(relative.as_posix(), safe="/")


class ReviewImageUrls:
    """Makes the URL a review tool opens for each image (see the module docstring)."""

    def __init__(
        self,
        *,
        mode: ImageUrlMode,
        s3: S3Config,
        expiry_seconds: int = 86_400,
        local_files_root: Path | None = None,
        session: boto3.Session | None = None,
    ) -> None:
        """Check the options; the S3 client is created on the first presigned URL."""
        if not 1 <= expiry_seconds <= MAX_EXPIRY_SECONDS:
            raise StorageConfigError(
                f"expected an expiry of 1 to {MAX_EXPIRY_SECONDS} seconds (SigV4's limit), "
                f"got {expiry_seconds}"
            )
        self.mode = mode
        self.expiry_seconds = expiry_seconds
        self._s3 = s3
        self._root = local_files_root
        self._session = session
        self._client: S3Client | None = None

    def _presign(self, bucket: str, key: str) -> str:
        if self._client is None:
            session = self._session or boto3.session.Session()
            config = botocore_config(self._s3).merge(Config(signature_version="s3v4"))
            self._client = session.client("s3", endpoint_url=self._s3.endpoint_url, config=config)
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=self.expiry_seconds,
        )
        return url

    def __call__(self, storage_url: str) -> str:
        """The URL of the image stored at `storage_url`.

        Raises:
            StorageConfigError: A `file://` image without a local-files root, or outside it.
            FormatError: Not an `s3://` or `file://` object URL.
        """
        root, key = split_object_url(storage_url)
        if root.startswith("file://"):
            if self._root is None:
                raise StorageConfigError(
                    f"a file:// image ({storage_url}) needs the Label Studio local-files "
                    "document root (--local-files-root)"
                )
            return local_files_url(storage_url, document_root=self._root)
        if not root.startswith("s3://"):
            raise FormatError(f"expected an s3:// or file:// image URL, got {storage_url!r}")
        if self.mode == "s3":
            return storage_url
        return self._presign(root.removeprefix("s3://"), key)
