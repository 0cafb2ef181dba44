"""Teach the model from reviewed alerts (admin): a new, not yet active, model version with its figures.

`POST /models/teach-normal` (reviewed false alarms taught as normal) and `POST /models/teach-defects`
(alerts reviewed `confirmed` taught as defects: a supervised classifier on top of the model's per-position
Gaussian head, a fifth of them kept out to check it) each start a background job and answer 202 with it;
`GET /models/teach-normal/{job_id}` and `GET /models/teach-defects/{job_id}` show its progress and, when
done, the candidate's id and before/after figures (also on its `GET /models` entry). Activation stays the
explicit `POST /models/{id}/activate`, and `POST /models/rollback` undoes it. The request and the job's
outcome are both audited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import Field, StringConstraints

from app.api.control import record_action
from app.api.deps import AUTH_RESPONSES, CONTROL_RESPONSES, Admin, AuditDep, RuntimeDep, Viewer
from app.api.runtime_port import RuntimePort
from app.api.schemas import ErrorBody, _Request
from app.api.security import Principal
from app.audit import AuditLog
from device.station.teaching import TeachBusyError, TeachJob, TeachKind, TeachRequestError, UnknownAlertsError

router = APIRouter(prefix="/models", tags=["models"], responses=AUTH_RESPONSES)

AlertIdText = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]
TARGET = "POST /models/teach-normal"
DEFECTS_TARGET = "POST /models/teach-defects"


class TeachRequest(_Request):
    alert_ids: list[AlertIdText] | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="False alarms to teach; omitted or null: every reviewed false alarm not yet taught.",
    )


def _job_link(kind: str = "normal") -> dict[str, dict[str, object]]:
    return {
        "TeachJob": {
            "operationRef": f"#/paths/~1models~1teach-{kind}~1{{job_id}}/get",
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
        job = runtime.teacher.start(
            alert_ids, principal.actor, on_done=_auditor(audit, principal, "teach_normal", TARGET)
        )
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
    return _job_of_kind(runtime, job_id, "normal")


@router.post(
    "/teach-defects",
    status_code=202,
    response_model=TeachJob,
    responses={
        **CONTROL_RESPONSES,
        202: {"links": _job_link("defects")},
        409: {
            "model": ErrorBody,
            "description": "A job is running, no confirmed defect (with an archived frame) to teach, or the "
            "active model has no per-position Gaussian head to teach defects on.",
        },
    },
)
def teach_defects(runtime: RuntimeDep, audit: AuditDep, principal: Admin) -> TeachJob:
    """Start building a candidate model that also learns the alerts reviewed `confirmed` (the newest
    `teach.max_defects_taught` with an archived frame; every fifth is kept out to check it). Not activated."""
    try:
        job = runtime.teacher.start_defects(
            principal.actor, on_done=_auditor(audit, principal, "teach_defects", DEFECTS_TARGET)
        )
    except (TeachRequestError, TeachBusyError) as exc:
        record_action(audit, principal, "teach_defects", DEFECTS_TARGET, ok=False, message=str(exc))
        raise HTTPException(409, detail=str(exc)) from exc
    record_action(
        audit,
        principal,
        "teach_defects",
        DEFECTS_TARGET,
        ok=True,
        new_value={
            "job_id": job.job_id,
            "alert_ids": job.alert_ids,
            "check_alert_ids": job.check_alert_ids,
            "skipped": job.skipped_alert_ids,
        },
        message="job started",
    )
    return job


@router.get(
    "/teach-defects/{job_id}",
    response_model=TeachJob,
    responses={404: {"model": ErrorBody, "description": "No such job (they are kept until a restart)."}},
)
def teach_defects_job(job_id: JobId, runtime: RuntimeDep, _: Viewer) -> TeachJob:
    """Status and progress; when done the candidate's `model_id` and its before/after `report`
    (`detection_rate_check`: on the confirmed defects kept out of teaching)."""
    return _job_of_kind(runtime, job_id, "defects")


def _job_of_kind(runtime: RuntimePort, job_id: str, kind: TeachKind) -> TeachJob:
    job = runtime.teacher.get(job_id)
    if job is None or job.kind != kind:
        raise HTTPException(404, detail=f"no teach-{kind} job {job_id!r} (jobs are forgotten on restart)")
    return job


# The figures an audit entry keeps of a finished job, per kind of report.
_AUDITED_FIGURES = {
    "teach_normal": {"bank_entries_added", "false_reject_rate_taught"},
    "teach_defects": {"defects_taught", "detection_rate_check", "false_reject_rate_good", "threshold"},
}


def _auditor(audit: AuditLog, principal: Principal, action: str, target: str) -> Callable[[TeachJob], None]:
    """The audit entry for the job's outcome, written when it finishes (on the job's thread)."""

    def on_done(job: TeachJob) -> None:
        figures = None
        if job.report is not None:
            figures = job.report.model_dump(include=_AUDITED_FIGURES[action])
        record_action(
            audit,
            principal,
            f"{action}_done",
            f"{target} job {job.job_id}",
            ok=job.state == "done",
            old_value=job.parent_model_id,
            new_value={"model_id": job.model_id, "figures": figures},
            message=job.error or "candidate registered, not active",
        )

    return on_done
