"""VISS v2 error objects: a number and reason from the specification's status-code table, and our message.

The table (VISSv2 Transport, "Status Codes") fixes the pairs; a reason outside it is a programming
error, refused at construction, so no client ever sees a number or reason the specification does
not define. The message says what was wrong and where; where Eclipse KUKSA's server has a text
for the same case, the message starts with it.
"""

from __future__ import annotations

STATUS_CODES = {
    "bad_request": 400,  # the request is malformed: not JSON, a missing member, a filter that cannot be parsed
    "invalid_data": 400,  # well formed, but breaks a VSS rule: a set of a sensor, a value outside its datatype
    "expired_token": 401,
    "invalid_token": 401,
    "missing_token": 401,
    "forbidden_request": 403,  # the server refuses: outside the token's scope, a replayed command, the BMS says no
    "unavailable_data": 404,  # no such path, no value yet, no recorded history, no such subscription
    "too_many_requests": 429,
    "bad_gateway": 502,
    "service_unavailable": 503,
    "gateway_timeout": 504,
}
UNKNOWN_PATH = "The specified data path does not exist."
READ_ONLY = "The desired signal cannot be set since it is a read only signal."
UNKNOWN_SUBSCRIPTION = "The specified subscription was not found."


class VissError(Exception):
    """A request the server refuses, as a VISS error object (number, reason, message)."""

    def __init__(self, reason: str, message: str):
        if reason not in STATUS_CODES:
            raise ValueError(f"{reason!r} is not a VISS v2 error reason ({', '.join(STATUS_CODES)})")
        super().__init__(message)
        self.number, self.reason, self.message = STATUS_CODES[reason], reason, message
        self.audited = False  # a refused set: whether its audit row was already written

    def as_dict(self) -> dict:
        return {"number": self.number, "reason": self.reason, "message": self.message}


def bad_request(message: str) -> VissError:
    return VissError("bad_request", message)


def unknown_path(detail: str) -> VissError:
    return VissError("unavailable_data", f"{UNKNOWN_PATH[:-1]}: {detail}")


def revoked_grant(grant_id: str) -> VissError:
    return VissError("invalid_token", f"Access token is invalid: the owner revoked grant {grant_id}")
