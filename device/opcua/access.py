"""Who may do what on the OPC UA server: logins, roles, and per-node write guards.

asyncua knows only Admin/User/Anonymous and checks write access with static access-level bits. The
station needs more: a viewer and an anonymous session may read but never write, an operator may write the
threshold, and that write must go through the runtime's command door. So every session user carries a
station role, and writes to guarded nodes are answered by a guard (status code per item) instead of
landing in the address space.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from asyncua import ua
from asyncua.crypto.permission_rules import USER_TYPES, SimpleRoleRuleset, User, UserRole
from asyncua.server.address_space import AddressSpace, AttributeService
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes

from device.config import OpcUaSettings, OpcUaUser

if TYPE_CHECKING:
    from asyncua.server.internal_server import InternalServer

log = logging.getLogger(__name__)

StationRole = Literal["anonymous", "viewer", "operator"]
WriteGuard = Callable[[ua.WriteValue, User], Awaitable[ua.StatusCode]]
_SERVER_SIDE = User(role=UserRole.Admin)  # asyncua's own default for writes made inside the server


@dataclass
class StationUser(User):
    """An asyncua session user with the station role decided at login."""

    station_role: StationRole = "anonymous"


def status(code: int) -> ua.StatusCode:
    """A status code for a write result (asyncua wants its own UInt32 type)."""
    return ua.StatusCode(ua.UInt32(code))


def station_role(user: User) -> StationRole | None:
    """The role of a network session; None for asyncua's internal (server-side) session."""
    return user.station_role if isinstance(user, StationUser) else None


class StationUserManager(UserManager):
    """Username/password logins from `OpcUaSettings`; anonymous sessions only if allowed."""

    def __init__(self, settings: OpcUaSettings) -> None:
        self._logins: tuple[tuple[OpcUaUser, StationRole], ...] = (
            (settings.operator, "operator"),
            (settings.viewer, "viewer"),
        )
        self._allow_anonymous = settings.allow_anonymous_read

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        # `certificate` is the client application's (secure channel), not a user token: X509 user tokens are
        # not offered, so a login is anonymous or username/password.
        if username is None and password is None:
            return StationUser(role=UserRole.Anonymous, name="anonymous") if self._allow_anonymous else None
        for login, role in self._logins:
            if _matches(login, username, password):
                return StationUser(role=UserRole.User, name=login.username, station_role=role)
        log.warning("OPC UA login refused for user %r", (username or "")[:64])
        return None


def _matches(login: OpcUaUser, username: str | None, password: str | None) -> bool:
    """Constant-time password check; a login without a password never matches."""
    if login.password is None or username != login.username or password is None:
        return False
    return hmac.compare_digest(password.encode(), login.password.get_secret_value().encode())


class StationRuleset(SimpleRoleRuleset):
    """Any logged-in session may use the ordinary services (read, browse, subscribe, write requests);
    node management (add/delete nodes and references) is nobody's over the network."""

    def __init__(self) -> None:  # replaces the parent's role table entirely, so no super().__init__()
        self._allowed = {ua.NodeId(ua.Int32(type_id)) for type_id in USER_TYPES}

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        return action_type_id in self._allowed


class GuardedAttributeService(AttributeService):
    """asyncua's attribute service, except that Value writes to guarded nodes are answered by a guard."""

    def __init__(self, aspace: AddressSpace) -> None:
        super().__init__(aspace)
        self._guards: dict[ua.NodeId, WriteGuard] = {}

    def add_guard(self, nodeid: ua.NodeId, guard: WriteGuard) -> None:
        self._guards[nodeid] = guard

    async def write(self, params: ua.WriteParameters, user: User = _SERVER_SIDE) -> list[ua.StatusCode]:
        """Network sessions write guarded Values only; the internal (admin) session writes as before."""
        results: list[ua.StatusCode] = []
        for item in params.NodesToWrite:
            guard = self._guards.get(item.NodeId)
            if station_role(user) is None and user.role == UserRole.Admin and guard is None:
                results.extend(await super().write(ua.WriteParameters(NodesToWrite=[item]), user))
            elif guard is not None and item.AttributeId == AttributeIds.Value:
                results.append(await guard(item, user))
            else:
                results.append(status(StatusCodes.BadUserAccessDenied))
        return results
