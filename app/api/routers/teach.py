"""Teach "this is normal" (admin): turn reviewed false alarms into a new, not yet active, model version.

`POST /models/teach-normal` starts a background job and answers 202 with it; `GET
/models/teach-normal/{job_id}` shows its progress and, when done, the candidate's id and before/after
figures (also on its `GET /models` entry). Activation stays the explicit `POST /models/{id}/activate`, and
`POST /models/rollback` undoes it. The request and the job's outcome are both audited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import Field, StringConstraints

from app.api.control import record_action
from app.api.deps import AUTH_RESPONSES, CONTROL_RESPONSES, Admin, AuditDep, RuntimeDep, Viewer
from app.api.schemas import ErrorBody, _Request
from app.api.security import Principal
from app.audit import AuditLog
from device.teaching import TeachBusyError, TeachJob, TeachRequestError, UnknownAlertsError

router = APIRouter(prefix="/models", tags=["models"], responses=AUTH_RESPONSES)

AlertIdText = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]
TARGET = "POST /models/teach-normal"


class TeachRequest(_Request):
    alert_ids: list[AlertIdText] | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="False alarms to teach; omitted or null: every reviewed false alarm not yet taught.",
    )


def _job_link() -> dict[str, dict[str, object]]:
    return {
        "TeachJob": {
            "operationRef": "#/paths/~1models~1teach-normal~1{job_id}/get",
            "parameters": {"job_id": "$response.body#/job_id"},
            "description": "Progress and, when done, the candidate model with its figures.",
        }
    }


@router.post(
    "/teach-normal",
    status_code=202,
    response_model=TeachJob,
    responses={
        **CONTROL_RESPONSES,
        202: {"links": _job_link()},
        404: {"model": ErrorBody, "description": "An alert id that is not in the history."},
        409: {
            "model": ErrorBody,
            "description": "A job is running, nothing is left to teach, or an alert is not a false alarm "
            "(or its frame is no longer archived).",
        },
    },
)
def teach_normal(
    runtime: RuntimeDep, audit: AuditDep, principal: Admin, body: TeachRequest | None = None
) -> TeachJob:
    """Start building a candidate model that takes the false alarms as normal (not activated)."""
    alert_ids = body.alert_ids if body is not None else None
    requested = {"alert_ids": alert_ids}

    def refuse(status: int, reason: str) -> HTTPException:
        record_action(audit, principal, "teach_normal", TARGET, ok=False, new_value=requested, message=reason)
        return HTTPException(status, detail=reason)

    try:
        job = runtime.teacher.start(alert_ids, principal.actor, on_done=_auditor(audit, principal))
    except UnknownAlertsError as exc:
        raise refuse(404, str(exc)) from exc
    except (TeachRequestError, TeachBusyError) as exc:
        raise refuse(409, str(exc)) from exc
    record_action(
        audit,
        principal,
        "teach_normal",
        TARGET,
        ok=True,
        new_value={"job_id": job.job_id, "alert_ids": job.alert_ids, "skipped": job.skipped_alert_ids},
        message="job started",
    )
    return job


@router.get(
    "/teach-normal/{job_id}",
    response_model=TeachJob,
    responses={404: {"model": ErrorBody, "description": "No such job (they are kept until a restart)."}},
)
def teach_job(job_id: JobId, runtime: RuntimeDep, _: Viewer) -> TeachJob:
    """Status and progress; when done the candidate's `model_id` and its before/after `report`."""
    job = runtime.teacher.get(job_id)
    if job is None:
        raise HTTPException(404, detail=f"no teach job {job_id!r} (jobs are forgotten on restart)")
    return job


def _auditor(audit: AuditLog, principal: Principal) -> Callable[[TeachJob], None]:
    """The audit entry for the job's outcome, written when it finishes (on the job's thread)."""

    def on_done(job: TeachJob) -> None:
        figures = None
        if job.report is not None:
            figures = job.report.model_dump(include={"bank_entries_added", "false_reject_rate_taught"})
        record_action(
            audit,
            principal,
            "teach_normal_done",
            f"{TARGET} job {job.job_id}",
            ok=job.state == "done",
            old_value=job.parent_model_id,
            new_value={"model_id": job.model_id, "figures": figures},
            message=job.error or "candidate registered, not active",
        )

    return on_done
