"""API keys: bearer tokens scoped to a tenant, to collections, and to read or write."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field
from sqlalchemy import JSON, Boolean, DateTime, String, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from quarry.retrieval.storage import Base

PREFIX = "qk_"


class Right(StrEnum):
    READ = "read"
    WRITE = "write"


class KeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    collections: Mapped[list[str]] = mapped_column(JSON, default=list)  # ["*"]: every collection of the tenant
    rights: Mapped[str] = mapped_column(String(8))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=lambda: datetime.now(UTC))


class Principal(BaseModel):
    """Who is calling: the admin, or a tenant's key with its scope."""

    key_id: str
    tenant: str
    collections: list[str] = Field(default_factory=lambda: ["*"])
    rights: Right = Right.READ
    admin: bool = False

    def may_see(self, collection: str) -> bool:
        return self.admin or "*" in self.collections or collection in self.collections

    def may_write(self) -> bool:
        return self.admin or self.rights is Right.WRITE


class KeyInfo(BaseModel):
    id: str
    name: str
    tenant: str
    collections: list[str]
    rights: Right
    revoked: bool
    created_at: datetime


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    """API keys in the database of a Store, whose start created the tables (migrations)."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def create(self, name: str, tenant: str, collections: list[str], rights: Right) -> tuple[KeyInfo, str]:
        """A new key; the token is returned once and only its hash is stored."""
        token = PREFIX + secrets.token_urlsafe(32)
        with self._sessions.begin() as s:
            row = KeyRow(
                id=str(uuid.uuid4()),
                name=name,
                tenant=tenant,
                digest=digest(token),
                collections=collections,
                rights=rights.value,
            )
            s.add(row)
            s.flush()
            return KeyInfo.model_validate(row, from_attributes=True), token

    def list_keys(self, tenant: str | None = None) -> list[KeyInfo]:
        with self._sessions() as s:
            query = select(KeyRow).order_by(KeyRow.created_at)
            if tenant:
                query = query.where(KeyRow.tenant == tenant)
            return [KeyInfo.model_validate(r, from_attributes=True) for r in s.scalars(query)]

    def revoke(self, key_id: str) -> bool:
        with self._sessions.begin() as s:
            return bool(s.execute(update(KeyRow).where(KeyRow.id == key_id).values(revoked=True)).rowcount)  # type: ignore[attr-defined]

    def authenticate(self, token: str, admin_token: str | None) -> Principal | None:
        if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
            return Principal(key_id="admin", tenant="default", admin=True, rights=Right.WRITE)
        with self._sessions() as s:
            row = s.scalar(select(KeyRow).where(KeyRow.digest == digest(token), KeyRow.revoked.is_(False)))
            if row is None:
                return None
            return Principal(key_id=row.id, tenant=row.tenant, collections=row.collections, rights=Right(row.rights))
