"""Model version registry: register, promote (one production version per variant), look up.

The rule "at most one production version per variant" is enforced here (promotion archives the
previous production version in the same transaction) and backed by a partial unique index.
"""

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from autolabel.storage.db.base import utc_now
from autolabel.storage.db.records import ModelVersionInfo
from autolabel.storage.db.tables import ModelStage, ModelVersion
from autolabel.storage.errors import ConflictError


def _info(row: ModelVersion) -> ModelVersionInfo:
    return ModelVersionInfo(
        id=row.id,
        name=row.name,
        variant=row.variant,
        sha256=row.sha256,
        storage_uri=row.storage_uri,
        metrics=dict(row.metrics),
        stage=ModelStage(row.stage),
        created_at=row.created_at,
        promoted_at=row.promoted_at,
    )


def register_model_version(
    session: Session,
    *,
    name: str,
    variant: str,
    sha256: str,
    storage_uri: str,
    metrics: Mapping[str, Any] | None = None,
) -> ModelVersionInfo:
    """Register weights as a `candidate`; registering the same name and sha256 again is a no-op.

    Raises:
        ConflictError: `name` is already registered with another sha256 or variant.
    """
    existing = session.execute(
        select(ModelVersion).where(ModelVersion.name == name)
    ).scalar_one_or_none()
    if existing is not None:
        if (existing.sha256, existing.variant) != (sha256, variant):
            raise ConflictError(
                f"model version {name!r} exists with variant {existing.variant!r} and sha256 "
                f"{existing.sha256[:12]}..., got variant {variant!r} and sha256 {sha256[:12]}..."
            )
        return _info(existing)
    row = ModelVersion(
        name=name,
        variant=variant,
        sha256=sha256,
        storage_uri=storage_uri,
        metrics=dict(metrics or {}),
        stage=ModelStage.CANDIDATE,
        created_at=utc_now(),
    )
    session.add(row)
    session.flush()
    return _info(row)


def _get(session: Session, name: str, *, lock: bool = False) -> ModelVersion:
    stmt = select(ModelVersion).where(ModelVersion.name == name)
    row = session.execute(stmt.with_for_update() if lock else stmt).scalar_one_or_none()
    if row is None:
        raise LookupError(f"expected a registered model version named {name!r}, found none")
    return row


def promote_model_version(session: Session, *, name: str) -> ModelVersionInfo:
    """Make `name` the production version of its variant and archive the previous one.

    Concurrent promotions of the same variant serialize on row locks (PostgreSQL); the partial
    unique index rejects any that slip through.

    Raises:
        LookupError: No model version called `name`.
        ConflictError: `name` is archived (archived versions are never promoted again).
    """
    row = _get(session, name, lock=True)
    if row.stage is ModelStage.ARCHIVED:
        raise ConflictError(f"expected a candidate or production version, {name!r} is archived")
    if row.stage is ModelStage.PRODUCTION:
        return _info(row)
    session.execute(
        select(ModelVersion.id)
        .where(ModelVersion.variant == row.variant, ModelVersion.stage == ModelStage.PRODUCTION)
        .with_for_update()
    )
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.variant == row.variant, ModelVersion.stage == ModelStage.PRODUCTION)
        .values(stage=ModelStage.ARCHIVED)
        .execution_options(synchronize_session="fetch")
    )
    row.stage = ModelStage.PRODUCTION
    row.promoted_at = utc_now()
    session.flush()
    return _info(row)


def archive_model_version(session: Session, *, name: str) -> ModelVersionInfo:
    """Retire a version (its variant then has no production version until another promotion)."""
    row = _get(session, name, lock=True)
    row.stage = ModelStage.ARCHIVED
    session.flush()
    return _info(row)


def get_production_model(session: Session, *, variant: str) -> ModelVersionInfo | None:
    """The production version of `variant`, or None."""
    row = session.execute(
        select(ModelVersion).where(
            ModelVersion.variant == variant, ModelVersion.stage == ModelStage.PRODUCTION
        )
    ).scalar_one_or_none()
    return None if row is None else _info(row)


def list_model_versions(session: Session, *, variant: str | None = None) -> list[ModelVersionInfo]:
    """Registered versions, newest first, optionally of one variant."""
    stmt = select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    if variant is not None:
        stmt = stmt.where(ModelVersion.variant == variant)
    return [_info(r) for r in session.execute(stmt).scalars()]


def get_model_version(session: Session, *, name: str) -> ModelVersionInfo:
    """The registered version called `name`; `LookupError` when there is none."""
    return _info(_get(session, name))


def find_model_version(session: Session, *, variant: str, sha256: str) -> ModelVersionInfo | None:
    """The oldest registered version of `variant` with these weights (sha256), or None."""
    row = session.execute(
        select(ModelVersion)
        .where(ModelVersion.variant == variant, ModelVersion.sha256 == sha256)
        .order_by(ModelVersion.created_at, ModelVersion.id)
        .limit(1)
    ).scalar_one_or_none()
    return None if row is None else _info(row)
