"""The audit log (admin): who changed what on the line, when, from what to what, and whether it worked."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import AUTH_RESPONSES, AdminRead, AuditDep
from app.api.filters import PageLimit, PageOffset
from app.api.schemas import AuditEntry, AuditPage

router = APIRouter(prefix="/audit", tags=["audit"], responses=AUTH_RESPONSES)


@router.get("", response_model=AuditPage)
def list_audit(
    audit: AuditDep,
    _: AdminRead,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> AuditPage:
    total, entries = audit.query(limit=limit, offset=offset)
    return AuditPage(total=total, limit=limit, offset=offset, items=[AuditEntry(**e) for e in entries])
