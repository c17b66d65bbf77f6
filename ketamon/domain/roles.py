"""Who may do what (clinical.md §8 item 42): checked by the session core for every command.

* nurses run sessions: screening, doses, observations, vitals, acknowledgements, discharge;
* physicians may do all a nurse does, and alone decide, override, change a session's limits,
  reset a latched emergency flag and cancel a session after dosing has started;
* admins change the clinic's limits and site settings, never a patient's record;
* auditors read; every command is refused to them;
* therapists (ketamine-assisted psychotherapy) write timed notes on a session they are assigned
  to, and read that session (the assignment is checked by the core and the review desk).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    NURSE = "nurse"
    PHYSICIAN = "physician"
    ADMIN = "admin"
    AUDITOR = "auditor"
    THERAPIST = "therapist"
    SYSTEM = "system"  # automatic writes (alarm engine, monitor link); never a person


class Action(enum.StrEnum):
    START = "start"
    SCREENING = "screening"
    PRESCRIBER_DECISION = "prescriber_decision"
    BP_OVERRIDE = "bp_override"  # dose without a pre-dose BP
    DOSE = "dose"
    INFUSION = "infusion"
    OBSERVATION = "observation"
    VITALS = "vitals"
    SYMPTOM_CHECK = "symptom_check"
    CORRECTION = "correction"
    ACKNOWLEDGE = "acknowledge"
    ALARM_RESET = "alarm_reset"
    RESET_EMERGENCY = "reset_emergency"
    SESSION_LIMITS = "session_limits"
    CLINIC_LIMITS = "clinic_limits"
    SITE_SETTINGS = "site_settings"
    USERS = "users"  # add, disable, unlock accounts and reset passwords (the admin tab)
    DISCHARGE = "discharge"
    DISCHARGE_OVERRIDE = "discharge_override"  # early, or with a criterion unmet
    CANCEL_BEFORE_DOSE = "cancel_before_dose"
    CANCEL_AFTER_DOSE = "cancel_after_dose"
    ALARM_EVENT = "alarm_event"  # the alarm engine's own events
    LINK_EVENT = "link_event"
    RECORDING = "recording"  # a headless recorder opens and closes its own session
    REVIEW = "review"  # read a finished session (every role but the system)
    SIGN = "sign"  # sign a finished session
    ADDENDUM = "addendum"  # add a signed addendum to a signed session
    LATE_ENTRY = "late_entry"  # a nurse's addendum to a signed session, to be countersigned
    PMF = "pmf"  # enter or confirm PMF fields, record the form's submission
    # the treatment course (issue 15)
    COURSE = "course"  # open or close a patient's course (its plan)
    COURSE_SCREENING = "course_screening"  # first-visit screening, by a prescriber
    CONTRAINDICATION_OVERRIDE = "contraindication_override"
    WASTE = "waste"  # record drug wasted (a second user witnesses it)
    SUICIDALITY_ACTION = "suicidality_action"  # the action taken on a PHQ-9 item-9 flag
    ASSIGN_THERAPIST = "assign_therapist"
    THERAPIST_NOTE = "therapist_note"


_CLINICAL = frozenset(
    {
        Action.START,
        Action.SCREENING,
        Action.DOSE,
        Action.INFUSION,
        Action.OBSERVATION,
        Action.VITALS,
        Action.SYMPTOM_CHECK,
        Action.CORRECTION,
        Action.ACKNOWLEDGE,
        Action.ALARM_RESET,
        Action.DISCHARGE,
        Action.CANCEL_BEFORE_DOSE,
        Action.REVIEW,
        Action.PMF,
        Action.LATE_ENTRY,
        Action.COURSE,
        Action.WASTE,
        Action.SUICIDALITY_ACTION,
        Action.ASSIGN_THERAPIST,
    }
)
_PHYSICIAN_ONLY = frozenset(
    {
        Action.PRESCRIBER_DECISION,
        Action.BP_OVERRIDE,
        Action.RESET_EMERGENCY,
        Action.SESSION_LIMITS,
        Action.DISCHARGE_OVERRIDE,
        Action.CANCEL_AFTER_DOSE,
        Action.SIGN,
        Action.ADDENDUM,
        Action.COURSE_SCREENING,
        Action.CONTRAINDICATION_OVERRIDE,
    }
)

PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.NURSE: _CLINICAL,
    Role.PHYSICIAN: _CLINICAL | _PHYSICIAN_ONLY,
    Role.ADMIN: frozenset({Action.CLINIC_LIMITS, Action.SITE_SETTINGS, Action.USERS}),
    Role.AUDITOR: frozenset({Action.REVIEW}),  # reads; changes nothing
    # reads and writes notes on the sessions they are assigned to (checked per session)
    Role.THERAPIST: frozenset({Action.REVIEW, Action.THERAPIST_NOTE}),
    Role.SYSTEM: frozenset({Action.ALARM_EVENT, Action.LINK_EVENT, Action.RECORDING}),
}

_WHO = {
    Action.PRESCRIBER_DECISION: "the prescriber (a physician)",
    Action.BP_OVERRIDE: "a physician",
    Action.RESET_EMERGENCY: "a physician",
    Action.SESSION_LIMITS: "a physician",
    Action.DISCHARGE_OVERRIDE: "a physician",
    Action.CANCEL_AFTER_DOSE: "a physician",
    Action.SIGN: "a physician",
    Action.ADDENDUM: "a physician",
    Action.COURSE_SCREENING: "a prescriber (a physician)",
    Action.CONTRAINDICATION_OVERRIDE: "a physician",
    Action.THERAPIST_NOTE: "the session's therapist",
    Action.CLINIC_LIMITS: "an admin",
    Action.SITE_SETTINGS: "an admin",
    Action.USERS: "an admin",
}


@dataclass(frozen=True, slots=True)
class Actor:
    """The signed-in person a command is made by (or a second person who authorises it)."""

    id: int
    username: str
    full_name: str
    role: Role
    credentials: str = ""  # e.g. "MD": printed with a signature (21 CFR 11.50)

    @property
    def is_physician(self) -> bool:
        return self.role is Role.PHYSICIAN


def allowed(role: Role, action: Action) -> bool:
    return action in PERMISSIONS.get(role, frozenset())


def refusal(role: Role, action: Action) -> str | None:
    """Why ``role`` may not do ``action`` (None: it may), worded for the user."""
    if allowed(role, action):
        return None
    if role is Role.AUDITOR:
        return "Auditors have read-only access"  # (reading is the one thing they may do)
    who = _WHO.get(action, "a nurse or a physician")
    what = action.value.replace("_", " ")
    return f"Only {who} may do this ({what}); you are signed in as {role.value}"
