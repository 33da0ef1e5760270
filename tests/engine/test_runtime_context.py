"""The engine loop runs callers' coroutines with the callers' context variables."""

import contextvars

from engine import runtime

request = contextvars.ContextVar("request", default=None)


def test_context_variables_reach_the_loop_and_its_threads():
    async def read() -> tuple:
        in_loop = request.get()
        in_thread = await runtime.in_thread(request.get)
        return in_loop, in_thread

    token = request.set("transfer-42")
    try:
        assert runtime.run(read()) == ("transfer-42", "transfer-42")
    finally:
        request.reset(token)
    assert runtime.run(read()) == (None, None)
