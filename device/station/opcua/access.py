"""Who may do what on the OPC UA server: channels, logins, roles, and per-node write guards.

asyncua knows only Admin/User/Anonymous and checks write access with static access-level bits. The
station needs more: a viewer and an anonymous session may read but never write, an operator may write the
threshold and call the recipe methods, and both must go through the runtime's command door. So every
session user carries a station role, writes to guarded nodes are answered by a guard (status code per item)
instead of landing in the address space, and calls of guarded methods by a method guard that is told the
session's user (asyncua's own method service tells a method nobody's). Each session is a `StationSession`,
which refuses a session on a SecurityPolicy None channel unless allowed (and a login on one unless
allowed), logs a refused login as one WARNING, and answers `UserAccessLevel` (and a guarded method's
`UserExecutable`) per session: read-only, and not executable, to anyone but a writer.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import USER_TYPES, SimpleRoleRuleset, User, UserRole
from asyncua.crypto.security_policies import SecurityPolicyFactory, SecurityPolicyNone
from asyncua.server.address_space import AddressSpace, AttributeService, MethodService
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from device.config import OpcUaSettings, OpcUaUser

log = logging.getLogger(__name__)

StationRole = Literal["anonymous", "viewer", "operator"]
WRITER_ROLES: frozenset[StationRole] = frozenset({"operator"})  # see writable nodes, executable methods
WriteGuard = Callable[[ua.WriteValue, User], Awaitable[ua.StatusCode]]
MethodGuard = Callable[[ua.CallMethodRequest, User], Awaitable[ua.CallMethodResult]]
_SERVER_SIDE = User(role=UserRole.Admin)  # asyncua's own default for writes made inside the server
_NOBODY = User(role=UserRole.Anonymous)  # asyncua's user of a session not activated yet
_READ_ONLY_MASK = ~(  # UserAccessLevel without any of the write bits
    (1 << ua.AccessLevel.CurrentWrite)
    | (1 << ua.AccessLevel.HistoryWrite)
    | (1 << ua.AccessLevel.StatusWrite)
    | (1 << ua.AccessLevel.TimestampWrite)
)


@dataclass
class StationUser(User):
    """An asyncua session user with the station role decided at login."""

    station_role: StationRole = "anonymous"


def status(code: int) -> ua.StatusCode:
    """A status code for a write result (asyncua wants its own UInt32 type)."""
    return ua.StatusCode(ua.UInt32(code))


def call_result(
    code: int, inputs: list[ua.StatusCode] | None = None, outputs: list[ua.Variant] | None = None
) -> ua.CallMethodResult:
    """A method call's result: its status, per-input-argument statuses (where one is to blame) and outputs."""
    return ua.CallMethodResult(
        StatusCode=status(code), InputArgumentResults=inputs or [], OutputArguments=outputs or []
    )


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
        # A refusal (None) is logged once by the session, which knows the peer.
        if username is None and password is None:
            return StationUser(role=UserRole.Anonymous, name="anonymous") if self._allow_anonymous else None
        for login, role in self._logins:
            if _matches(login, username, password):
                return StationUser(role=UserRole.User, name=login.username, station_role=role)
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
        if action_type_id in self._allowed:
            return True
        log.warning(
            "OPC UA request refused: %s may not call service %s", user.name, action_type_id.Identifier
        )
        return False


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


class GuardedMethodService(MethodService):
    """asyncua's method service, except that calls of guarded methods are answered by a guard, with the
    calling session's user (asyncua calls a method with its object's NodeId and the arguments only).

    A guarded method is called on its own object only (BadMethodInvalid otherwise); a call without a
    session user (the server's own) is the guard's to refuse. Unguarded methods (the standard Server
    object's) run as asyncua runs them."""

    def __init__(self, aspace: AddressSpace) -> None:
        super().__init__(aspace)
        self._guards: dict[ua.NodeId, tuple[ua.NodeId, MethodGuard]] = {}

    def add_guard(self, object_id: ua.NodeId, method_id: ua.NodeId, guard: MethodGuard) -> None:
        self._guards[method_id] = (object_id, guard)

    def guarded(self, method_id: ua.NodeId) -> bool:
        return method_id in self._guards

    async def call(
        self, methods: list[ua.CallMethodRequest], user: User = _SERVER_SIDE
    ) -> list[ua.CallMethodResult]:
        results: list[ua.CallMethodResult] = []
        for method in methods:
            guarded = self._guards.get(method.MethodId)
            if guarded is None:
                results.extend(await super().call([method]))
            elif method.ObjectId != guarded[0]:
                results.append(call_result(StatusCodes.BadMethodInvalid))
            else:
                results.append(await guarded[1](method, user))
        return results


# ---- sessions ------------------------------------------------------------------------------------------
class StationSession(InternalSession):
    """asyncua's session, plus the station's rules for activating one and its per-user access levels."""

    def __init__(
        self,
        internal_server: InternalServer,
        name: Any,
        settings: OpcUaSettings,
        user: User = _NOBODY,
        external: bool = False,
    ) -> None:
        super().__init__(
            internal_server,
            internal_server.aspace,
            internal_server.subscription_service,
            name,
            user=user,
            external=external,
        )
        self._settings = settings

    def activate_session(
        self, params: ua.ActivateSessionParameters, peer_certificate: bytes | None
    ) -> ua.ActivateSessionResult:
        """Refuse what the settings do not allow before asyncua looks at the token; any refusal is logged
        once, as a WARNING naming the user (never the password) and the peer."""
        token = params.UserIdentityToken
        if isinstance(token, ua.ExtensionObject) and token.TypeId.is_null():
            token = ua.AnonymousIdentityToken()  # an empty token means anonymous (Part 4, 5.6.3)
        refusal = self._channel_refusal(token, peer_certificate)
        try:
            if refusal is not None:
                raise ServiceError(refusal[0])
            return super().activate_session(params, peer_certificate)
        except (ServiceError, UaStatusCodeError) as exc:
            code = status(exc.code)
            reason = refusal[1] if refusal is not None else _REFUSAL_REASONS.get(code.value, code.doc)
            log.warning(
                "OPC UA login refused: %s from %s: %s (%s)", _who(token), _peer(self.name), reason, code.name
            )
            raise

    def _channel_refusal(self, token: Any, peer_certificate: bytes | None) -> tuple[int, str] | None:
        """The status code and reason refusing this token on this channel; None lets asyncua decide.

        A Sign or SignAndEncrypt channel always carries the client's certificate; a channel without one
        (None, or b"" as asyncua's None policy has it) is SecurityPolicy None (`PlainChannels` drops any
        certificate a client sends on a None channel)."""
        plain = not peer_certificate
        if plain and not self._settings.allow_unencrypted:
            return StatusCodes.BadSecurityModeRejected, "SecurityPolicy None is off (opcua.allow_unencrypted)"
        if not isinstance(token, self.iserver.supported_tokens):  # refused here: asyncua logs an ERROR
            if isinstance(token, ua.AnonymousIdentityToken):
                return (
                    StatusCodes.BadIdentityTokenRejected,
                    "anonymous sessions are off (opcua.allow_anonymous_read)",
                )
            return StatusCodes.BadIdentityTokenRejected, "this kind of login is not offered"
        if (
            plain
            and isinstance(token, ua.UserNameIdentityToken)
            and not self._settings.allow_unencrypted_login
        ):
            return (
                StatusCodes.BadIdentityTokenRejected,
                "no logins over SecurityPolicy None (opcua.allow_unencrypted_login)",
            )
        return None

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        """`UserAccessLevel` (and `UserWriteMask`) as this session's user may use them: a session that may
        not write sees every node read-only and every guarded method not `UserExecutable`; the write and the
        call themselves are still checked by their guards."""
        results = await super().read(params)
        if station_role(self.user) in WRITER_ROLES:
            return results
        methods = self.iserver.method_service
        return [
            _read_only(
                item, result, isinstance(methods, GuardedMethodService) and methods.guarded(item.NodeId)
            )
            for item, result in zip(params.NodesToRead, results, strict=False)
        ]

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        """Guarded methods are told who calls (`GuardedMethodService`)."""
        methods = self.iserver.method_service
        if isinstance(methods, GuardedMethodService):
            return await methods.call(params, self.user)
        return await super().call(params)


class PlainChannels(SecurityPolicyFactory):
    """The factory of SecurityPolicy None channels: such a channel keeps no client certificate (a client may
    send one, unchecked and of no use without security), so a session knows its channel is None by the
    certificate missing. Without this factory a None channel gets asyncua's default policy, which has none
    either."""

    def create(self, peer_certificate: bytes | None) -> SecurityPolicyNone:
        policy = super().create(None)  # type: ignore[no-untyped-call]  # asyncua leaves it unannotated
        assert isinstance(policy, SecurityPolicyNone)
        return policy


class StationInternalServer(InternalServer):
    """asyncua's internal server, except that network sessions are `StationSession`s and methods may be
    guarded (`GuardedMethodService`)."""

    def __init__(self, settings: OpcUaSettings) -> None:
        super().__init__(user_manager=StationUserManager(settings))
        self._settings = settings
        self.method_service.stop()  # asyncua's own, unused (its thread pool has started no thread)
        self.methods = GuardedMethodService(self.aspace)
        self.method_service = self.methods

    def create_session(self, name: str, user: User = _NOBODY, external: bool = False) -> InternalSession:
        return StationSession(self, name, self._settings, user=user, external=external)


_REFUSAL_REASONS = {
    StatusCodes.BadUserAccessDenied: "wrong user name or password",
    StatusCodes.BadIdentityTokenInvalid: "the login token could not be decrypted",
}


def _read_only(item: ua.ReadValueId, result: ua.DataValue, guarded_method: bool = False) -> ua.DataValue:
    variant = result.Value
    if variant is None or not isinstance(variant.Value, int):  # bool is an int too
        return result
    if item.AttributeId == AttributeIds.UserExecutable and guarded_method:
        return dataclasses.replace(result, Value=ua.Variant(False, ua.VariantType.Boolean))
    if item.AttributeId == AttributeIds.UserAccessLevel:
        level = ua.Byte(variant.Value & _READ_ONLY_MASK & 0xFF)
        return dataclasses.replace(result, Value=ua.Variant(level, ua.VariantType.Byte))
    if item.AttributeId == AttributeIds.UserWriteMask:
        return dataclasses.replace(result, Value=ua.Variant(ua.UInt32(0), ua.VariantType.UInt32))
    return result


def _who(token: Any) -> str:
    if isinstance(token, ua.UserNameIdentityToken):
        return f"user {(token.UserName or '')[:64]!r}"
    if isinstance(token, ua.AnonymousIdentityToken):
        return "anonymous"
    return f"a {type(token).__name__}"


def _peer(name: Any) -> str:
    """`host:port` (`[host]:port` for IPv6) from asyncua's session name, which is the socket's peer name."""
    if isinstance(name, tuple) and len(name) >= 2:
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(name)


# ---- asyncua's own log lines about refusals the station has already logged ------------------------------
_FAULT_MESSAGE = "sending service fault response: %s (%s)"
_LOGGED_REFUSALS = frozenset(
    status(code).name
    for code in (
        StatusCodes.BadUserAccessDenied,
        StatusCodes.BadIdentityTokenRejected,
        StatusCodes.BadIdentityTokenInvalid,
        StatusCodes.BadSecurityModeRejected,
        StatusCodes.BadSessionNotActivated,
    )
)


class _LoggedRefusals(logging.Filter):
    """asyncua logs every refused request as an ERROR ("sending service fault response"). A refused login is
    not a server error and has been logged once already, as a WARNING naming the user and the peer; so have
    a service the ruleset refuses and a request without a session (asyncua's own WARNING). A request on a
    session whose activation was refused follows from such a refusal."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            record.msg == _FAULT_MESSAGE
            and isinstance(args, tuple)
            and len(args) == 2
            and args[1] in _LOGGED_REFUSALS
        )


def quiet_logged_refusals() -> None:
    """Install the filter on asyncua's request processor's logger (once per process)."""
    processor = logging.getLogger("asyncua.server.uaprocessor")
    if not any(isinstance(existing, _LoggedRefusals) for existing in processor.filters):
        processor.addFilter(_LoggedRefusals())
