"""``recsys serve --workers N`` as a pre-fork server: the parent loads the model once, then forks N workers that
serve one listening socket, so the pages every worker only reads (the engine's arrays and Python objects, the
compiled query kernels, the imported libraries) stay shared copy-on-write instead of being built N times.

The parent never serves and never starts a thread, an event loop or a database connection that would outlive a
fork: the state, its sync thread and the event loop start in each worker (the app's lifespan), exactly as in a
single-process server. The parent supervises: SIGTERM or SIGINT stops every worker (SIGTERM, then SIGKILL after
``GRACE_S``) and exits 0; a worker that dies while serving is replaced by a fresh fork of the parent; a worker that
fails before it starts serving (the app, the state or the socket is broken, and would be on every restart), or too
many deaths in a short time, stops them all and makes the parent exit non-zero. Workers get SIGTERM when the parent
dies (Linux), so none outlives it.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Final

from recsys import ArtifactError, Inventory, SubstituteEngine
from recsys.model.registry import InvalidVersionError, check_version
from recsys.state.storage import StateUnavailableError
from recsys.state.store import open_state
from serving.settings import Settings

log = logging.getLogger("recsys.serving")

#: uvicorn's exit status for a server that never started (the same meaning here: a worker that failed to start)
STARTUP_FAILURE: Final[int] = 3
#: how long stopping workers get between SIGTERM and SIGKILL
GRACE_S: Final[float] = 30.0
#: more worker deaths than this within ``RESTART_WINDOW_S`` is a crash loop: the parent gives up
MAX_RESTARTS: Final[int] = 5
RESTART_WINDOW_S: Final[float] = 60.0
#: how long the parent waits for threads that are ending (a closed connection pool's) before it forks
THREADS_END_S: Final[float] = 10.0
_PR_SET_PDEATHSIG: Final[int] = 1
_STOP_SIGNALS: Final[frozenset[signal.Signals]] = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


@dataclass(frozen=True)
class WorkerOptions:
    host: str
    port: int
    log_level: str


def pointed_version(settings: Settings) -> str | None:
    """The model version the state's pointer names, read through a connection closed again before returning (no
    connection may cross a fork); None when there is no state, no pointer, a pointer that is not a plain version
    name, or the state cannot be reached."""
    location = settings.state_location()
    if location is None:
        return None
    try:
        store = open_state(location, password=settings.state_password_value(),
                           password_file=settings.state_password_file)
    except Exception as exc:  # best effort: the workers open the state again, and report what fails there
        log.warning("cannot read the model pointer: %s", exc)
        return None
    try:
        return check_version(version) if (version := store.model_pointer()) is not None else None
    except StateUnavailableError:
        return None
    except InvalidVersionError as exc:  # never a path outside the models directory; the workers report it
        log.error("the model pointer is refused: %s", exc)
        return None
    finally:
        store.close()


def load_shared_engine(settings: Settings) -> SubstituteEngine:
    """The engine the workers inherit: the version the state's pointer names when it loads, else ``model_path``.
    Its inventory is an empty placeholder; each worker gives the engine its own
    (:meth:`recsys.SubstituteEngine.use_inventory`)."""
    models_dir = settings.models_directory()
    version = pointed_version(settings)
    if version is not None and (models_dir / version).resolve() != settings.model_path.resolve():
        try:
            return SubstituteEngine.load(models_dir / version, Inventory())
        except ArtifactError as exc:  # the workers log it again when they follow the pointer
            log.error("the model pointer names %s, which cannot be loaded (%s): loading %s", version, exc,
                      settings.model_path)
    return SubstituteEngine.load(settings.model_path, Inventory())


class PreforkError(Exception):
    """The pre-fork server cannot start (the address is taken, threads are running in the parent)."""


def _bind(options: WorkerOptions) -> socket.socket:
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((options.host, options.port))
    except OSError as exc:
        sock.close()
        raise PreforkError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}") from exc
    sock.listen(2048)  # uvicorn's default backlog; connections queue here while a worker starts
    sock.set_inheritable(True)
    return sock


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this process when its parent dies, so a killed parent leaves no orphan serving."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the parent's SIGTERM handler is the only way workers stop
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _worker(engine: SubstituteEngine, settings: Settings, sock: socket.socket, options: WorkerOptions, *,
            parent: int, configure: Callable[[bool], None], first: bool) -> int:
    """The body of a forked worker: its own app (state, sync thread, event loop) around the inherited engine."""
    import uvicorn

    from serving.app import create_app
    from serving.http import CoalescingHttpToolsProtocol

    try:
        _die_with_parent(parent)
        configure(first)
        config = uvicorn.Config(create_app(settings, engine=engine), log_level=options.log_level, access_log=False,
                                http=CoalescingHttpToolsProtocol)
        server = uvicorn.Server(config)
    except Exception:
        log.exception("worker %d could not start", os.getpid())
        return STARTUP_FAILURE
    server.run(sockets=[sock])  # returns once stopped; a failed start (the app's lifespan) leaves started False
    return 0 if server.started else STARTUP_FAILURE


class Supervisor:
    """Forks the workers and keeps them running until told to stop; see the module's description."""

    def __init__(self, engine: SubstituteEngine, settings: Settings, sock: socket.socket, workers: int,
                 options: WorkerOptions, configure: Callable[[bool], None]) -> None:
        self.engine, self.settings, self.sock, self.workers = engine, settings, sock, workers
        self.options, self.configure = options, configure
        self.children: dict[int, int] = {}  # pid -> slot
        self.deaths: list[float] = []
        self.stopping = False

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _fork(self, slot: int, first: bool = False) -> None:
        parent = os.getpid()
        # a stop signal arriving between the fork and the worker's own handlers waits, instead of reaching the
        # parent's handler in the worker
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        sys.stdout.flush()  # or the worker would write the parent's buffered output again
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            status = 1
            try:
                for sig in _STOP_SIGNALS:  # uvicorn installs its own while it serves
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
                status = _worker(self.engine, self.settings, self.sock, self.options, parent=parent,
                                 configure=self.configure, first=first)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        self.children[pid] = slot
        log.info("started worker %d (pid %d)", slot, pid)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (exit status 0) or until workers cannot be kept running (non-zero)."""
        for thread in threading.enumerate():  # e.g. a database pool's, ending after its close
            if thread is not threading.main_thread():
                thread.join(THREADS_END_S)
        if threading.active_count() != 1:
            raise PreforkError("cannot fork workers: threads are running in the parent "
                               f"({', '.join(t.name for t in threading.enumerate())})")
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._stop)
        # everything loaded so far lives as long as the parent: out of the cyclic GC, whose scans would write
        # to (and so copy) every shared page holding a Python object in each worker
        gc.collect()
        gc.freeze()
        for slot in range(self.workers):
            self._fork(slot, first=slot == 0)
        status = 0
        while not self.stopping:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.2)  # a signal handler only sets a flag, read here
                continue
            slot = self.children.pop(pid, None)
            if slot is None or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            if code == STARTUP_FAILURE:
                log.error("worker %d (pid %d) failed to start: stopping", slot, pid)
                status = STARTUP_FAILURE
                break
            now = time.monotonic()
            self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW_S] + [now]
            if len(self.deaths) > MAX_RESTARTS:
                log.error("%d workers died within %.0f s: stopping", len(self.deaths), RESTART_WINDOW_S)
                status = 1
                break
            log.warning("worker %d (pid %d) ended with status %d: starting another", slot, pid, code)
            self._fork(slot)
        self._terminate()
        return status

    def _terminate(self) -> None:
        for pid in self.children:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while self.children and time.monotonic() < deadline:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.05)
            else:
                self.children.pop(pid, None)
        for pid in list(self.children):
            log.warning("worker pid %d did not stop within %.0f s: killing it", pid, GRACE_S)
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.children.clear()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def serve(settings: Settings, workers: int, options: WorkerOptions, configure: Callable[[bool], None]) -> int:
    """Bind, load the model once, fork ``workers`` workers and supervise them; returns the exit status.
    ``configure(first)`` runs in each worker before its app is built (``first``: the first worker started). Raises
    :class:`recsys.ArtifactError` when no model loads and :class:`PreforkError` when the server cannot start."""
    import uvicorn  # noqa: F401  imported before forking, with the app's modules, so workers share them

    import serving.app  # noqa: F401

    sock = _bind(options)
    engine = load_shared_engine(settings)
    log.info("model %s loaded once for %d workers, listening on http://%s:%d", engine.version, workers,
             f"[{options.host}]" if ":" in options.host else options.host, options.port)
    return Supervisor(engine, settings, sock, workers, options, configure).run()
