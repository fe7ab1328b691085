"""The encodings written directly for speed are exactly what the json module writes: an
attempt record is ``json.dumps(..., sort_keys=True)`` of its fields, and a context value is
the strict encoder's text (the memory driver reads both back with the stores' one decoder)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowcraft_core.engine.history import attempt_record
from flowcraft_core.protocols.context import encode

times = st.none() | st.floats() | st.integers(-(10**12), 10**12)
errors = st.none() | st.fixed_dictionaries(
    {"type": st.text(), "message": st.text()}, optional={"traceback": st.text()}
)


@given(
    attempt=st.integers(0, 10**9) | st.booleans(),
    status=st.text(),
    started=times,
    finished=times,
    worker=st.none() | st.text(),
    error=errors,
)
def test_attempt_record_is_json_dumps_of_its_fields(
    attempt: int,
    status: str,
    started: float | None,
    finished: float | None,
    worker: str | None,
    error: dict[str, Any] | None,
) -> None:
    fields = {
        "attempt": attempt,
        "status": status,
        "started": started,
        "finished": finished,
        "worker": worker,
        "error": None if error is None else {"type": error["type"], "message": error["message"]},
    }
    written = attempt_record(
        attempt, status, started=started, finished=finished, worker=worker, error=error
    )
    assert written == json.dumps(fields, sort_keys=True)


scalars = st.none() | st.booleans() | st.integers() | st.text()
values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(values)
def test_encode_is_the_strict_encoder(value: Any) -> None:
    strict = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert encode(value) == strict.encode(value)
    assert json.loads(encode(value)) == value
