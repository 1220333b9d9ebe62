"""Finds the Code Assist project of an account, onboarding it when needed (GC `setup.ts`).

    loadCodeAssist -> currentTier?  yes: its cloudaicompanionProject
                                    no:  onboardUser(default tier) -> poll the operation until done

Polling uses GET `<base>/v1internal/<operation name>` as the CLI does since 2026-01.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from llmbridge.errors import AccountUnusable, UpstreamUnavailable

# (method, path relative to the v1internal base, JSON body or None) -> parsed JSON answer.
Call = Callable[[str, str, dict[str, Any] | None], Awaitable[dict[str, Any]]]
METADATA = {"ideType": "IDE_UNSPECIFIED", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"}
FREE_TIER = "free-tier"


@dataclass
class ProjectInfo:
    project: str
    tier: str | None = None


async def discover_project(
    call: Call, configured: str | None = None, poll_interval: float = 5.0, max_polls: int = 60
) -> ProjectInfo:
    """The project to send with every request; AccountUnusable with a plain reason when there is none."""
    metadata = {**METADATA, "duetProject": configured} if configured else dict(METADATA)
    body: dict[str, Any] = {"metadata": metadata}
    if configured:
        body["cloudaicompanionProject"] = configured
    loaded = await call("POST", ":loadCodeAssist", body)
    _refuse_ineligible(loaded)
    if loaded.get("currentTier"):
        return _current(loaded, configured)
    tier = _default_tier(loaded)
    operation = await call("POST", ":onboardUser", _onboard_body(tier, configured))
    for _ in range(max_polls):
        if operation.get("done"):
            return ProjectInfo(_onboarded_project(operation, configured), tier)
        await asyncio.sleep(poll_interval)
        operation = await call("GET", "/" + str(operation.get("name", "")).lstrip("/"), None)
    raise UpstreamUnavailable(f"Code Assist onboarding did not finish after {max_polls} polls; retry later")


def _tier_id(tier: Any) -> str | None:
    return tier.get("id") if isinstance(tier, dict) else None


def _current(loaded: dict[str, Any], configured: str | None) -> ProjectInfo:
    tier = _tier_id(loaded.get("paidTier")) or _tier_id(loaded.get("currentTier"))
    project = _project_id(loaded.get("cloudaicompanionProject")) or configured
    if not project:
        raise AccountUnusable(
            "this Google account has no Code Assist project; set `project` on the account "
            "to your Google Cloud project id (tier " + str(tier) + ")"
        )
    return ProjectInfo(project, tier)


def _refuse_ineligible(loaded: dict[str, Any]) -> None:
    """Raise when Google says this account cannot use Code Assist and offers no tier."""
    if loaded.get("currentTier") or loaded.get("allowedTiers"):
        return
    for tier in loaded.get("ineligibleTiers") or []:
        reason = tier.get("reasonMessage") or tier.get("reasonCode") or "not eligible"
        link = tier.get("validationUrl")
        extra = f"; verify the account at {link}" if link else ""
        raise AccountUnusable(
            f"Google says this account cannot use Gemini Code Assist: {reason}{extra}", code=tier.get("reasonCode")
        )


def _default_tier(loaded: dict[str, Any]) -> str:
    for tier in loaded.get("allowedTiers") or []:
        if isinstance(tier, dict) and tier.get("isDefault") and tier.get("id"):
            return str(tier["id"])
    return "legacy-tier"


def _onboard_body(tier: str, configured: str | None) -> dict[str, Any]:
    # Sending a project for the free tier makes Google answer "Precondition Failed".
    if tier == FREE_TIER or not configured:
        return {"tierId": tier, "metadata": dict(METADATA)}
    return {"tierId": tier, "cloudaicompanionProject": configured, "metadata": {**METADATA, "duetProject": configured}}


def _onboarded_project(operation: dict[str, Any], configured: str | None) -> str:
    response = operation.get("response") or {}
    project = _project_id(response.get("cloudaicompanionProject")) or configured
    if not project:
        raise AccountUnusable(
            "Code Assist onboarding gave no project; set `project` on the account to your Google Cloud project id"
        )
    return project


def _project_id(value: Any) -> str | None:
    """A string in loadCodeAssist, an object {id, name} in the onboarding answer."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None
