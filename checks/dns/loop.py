"""The one event loop every DNS question of the process is asked on.

Why a loop in a thread of its own: the check engine and its DNS are asynchronous, but
much of what uses DNS is not — pyspf and dkimpy call a lookup function and wait for
its answer, the SMTP and HTTPS probes block on sockets, ``mailstack diff`` and the lab
are plain functions. With the loop in a background thread, blocking code in any other
thread hands a coroutine to the loop and waits for its result
(``run_coroutine_threadsafe``), while async code on the loop awaits the same resolver,
the same cache and the same per-server limits directly. The thread is started on
first use, never at import, and is a daemon: a process never waits for it to exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


class LoopReentry(RuntimeError):
    """Blocking on the loop from inside the loop would deadlock: await instead."""


def get() -> asyncio.AbstractEventLoop:
    """The shared loop, started in its daemon thread on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=serve, name="mailstack-dns", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread = loop, thread
        return _loop


def on_loop() -> bool:
    """True when called from the loop's own thread."""
    return _thread is not None and threading.current_thread() is _thread


def submit(coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coroutine`` on the loop from any thread; its future."""
    if on_loop():
        coroutine.close()
        raise LoopReentry("a blocking DNS call was made on the event loop; await the async resolver instead")
    return asyncio.run_coroutine_threadsafe(coroutine, get())


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the loop and wait for its result (from any other thread).

    An interrupt of the waiting thread (Ctrl-C) cancels the coroutine on the loop.
    """
    future = submit(coroutine)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise
