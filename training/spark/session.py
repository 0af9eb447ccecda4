"""The SparkSession the trainer uses: UTC session time, Arrow transfers, a small shuffle for local runs; in local mode
a driver sized from the machine that listens on loopback only, with no UI; and Spark's failures told by their cause
(a Java OutOfMemoryError names the setting to raise)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: where a local-mode session listens: a trainer on one machine serves nobody on the network
LOOPBACK = "127.0.0.1"
#: the least driver memory a local-mode session gets by default: Spark's own 1 GB fails on a few million events
MIN_DRIVER_GB = 2
#: a Java OutOfMemoryError (java.lang's, or Spark's own SparkOutOfMemoryError) and its message, in a stack trace
_OUT_OF_MEMORY = re.compile(r"[\w.$]*OutOfMemoryError\b(?:: [^\n]*)?")


def spark_session(master: str | None = None, app_name: str = "recsys-train", driver_memory: str | None = None,
                  shuffle_partitions: int | None = None, console_progress: bool = False) -> SparkSession:
    """The active session, or a new one. ``master`` None: whatever spark-submit set (else ``local[*]``).
    ``console_progress``: Spark's own stage bars on stderr, for a terminal only (in a log they are carriage
    returns on one endless line).

    Timestamps are read and compared in UTC, as the single-machine trainer treats its naive timestamps, so an
    event's age does not move with the driver's time zone or a daylight-saving change."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    if driver_memory:  # read when the JVM starts: a session already running keeps its memory
        builder = builder.config("spark.driver.memory", driver_memory)
    if is_local(master):  # the driver, its block manager and the UI would listen on every interface
        builder = (builder.config("spark.driver.host", LOOPBACK).config("spark.driver.bindAddress", LOOPBACK)
                   .config("spark.ui.enabled", "false"))
    if shuffle_partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    builder = builder.config("spark.ui.showConsoleProgress", "true" if console_progress else "false")
    session = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "true")
               .getOrCreate())
    session.conf.set("spark.sql.session.timeZone", "UTC")
    running_on = session.sparkContext.master
    if running_on.startswith("local") and not session.sparkContext.getConf().contains("spark.sql.shuffle.partitions"):
        # Spark's default of 200 shuffle partitions is for clusters: on a few local cores each of the trainer's
        # many small shuffles would spend most of its time scheduling near-empty tasks
        session.conf.set("spark.sql.shuffle.partitions", str(4 * _local_cores(running_on)))
    return session


def is_local(master: str | None) -> bool:
    """Whether a session for ``master`` runs in local mode: a ``local`` master, or none given outside spark-submit
    (pyspark then runs ``local[*]``) without a ``--master`` in ``PYSPARK_SUBMIT_ARGS``."""
    if master:
        return master.startswith("local")
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # under spark-submit: its master, whatever it is
        return False
    submit_args = shlex.split(os.environ.get("PYSPARK_SUBMIT_ARGS", ""))
    given = [value for option, value in zip(submit_args, submit_args[1:]) if option == "--master"]
    return not given or given[-1].startswith("local")


def default_driver_memory(master: str | None) -> str | None:
    """``--driver-memory``'s default: in local mode, where Spark's executors run inside the driver, half of this
    machine's memory (its cgroup's limit where lower), at least :data:`MIN_DRIVER_GB` GB. None where the driver's
    memory is not this process's to choose (a cluster, spark-submit) or is set already (``PYSPARK_SUBMIT_ARGS``,
    ``SPARK_DRIVER_MEMORY``, ``spark-defaults.conf``)."""
    if not is_local(master) or _driver_memory_configured():
        return None
    return f"{max(MIN_DRIVER_GB, machine_memory() // 2**30 // 2)}g"


def machine_memory() -> int:
    """This machine's memory in bytes, or its cgroup's limit where that is lower (a container)."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return physical
    return min(physical, int(limit)) if limit.isdigit() else physical


def _driver_memory_configured() -> bool:
    submit_args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    if "--driver-memory" in submit_args or "spark.driver.memory" in submit_args or "SPARK_DRIVER_MEMORY" in os.environ:
        return True
    conf_dir = os.environ.get("SPARK_CONF_DIR") or (Path(os.environ["SPARK_HOME"]) / "conf"
                                                    if "SPARK_HOME" in os.environ else None)
    try:
        defaults = (Path(conf_dir) / "spark-defaults.conf").read_text() if conf_dir else ""
    except OSError:
        return False
    return any(line.split()[:1] == ["spark.driver.memory"] for line in defaults.splitlines())


def describe_failure(exc: BaseException, driver_memory: str | None = None) -> str | None:
    """A Spark failure as one line: a Java OutOfMemoryError anywhere in ``exc``'s chain names the memory to raise
    (``driver_memory``: the driver's, when known); any other pyspark or py4j error is Spark's first line. None for an
    exception that is neither."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    out_of_memory = java_out_of_memory(exc)
    if out_of_memory is not None:
        now = f" (it was {driver_memory})" if driver_memory else ""
        return (f"spark: out of Java memory ({out_of_memory}): raise --driver-memory{now}; in local mode Spark's "
                f"executors share the driver's memory, on a cluster an executor's is spark.executor.memory")
    if isinstance(exc, PySparkException | Py4JError):  # a path Spark cannot read, a cluster it cannot reach
        text = _text(exc).strip()
        return f"spark: {text.splitlines()[0] if text else type(exc).__name__}"
    return None


def java_out_of_memory(exc: BaseException) -> str | None:
    """The Java OutOfMemoryError anywhere in ``exc``'s chain, as ``class: message``: the Python exceptions it was
    raised from or during, pyspark's captured causes, and each py4j error's Java exception and its causes; None
    when there is none. A JVM that died with it leaves only the messages to read, and they are read too."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        for java in (getattr(error, "java_exception", None), getattr(error, "_origin", None)):
            found = _java_out_of_memory(java)
            if found is not None:
                return found
        text = _text(error) + "\n" + str(getattr(error, "_stackTrace", "") or "")
        match = _OUT_OF_MEMORY.search(text)
        if match is not None:
            return match.group(0).strip()
        pending += [cause for cause in (error.__cause__, error.__context__, getattr(error, "_cause", None))
                    if isinstance(cause, BaseException)]
    return None


def _java_out_of_memory(java: object, most: int = 64) -> str | None:
    """The OutOfMemoryError among a Java throwable and its causes (through py4j), as ``class: message``."""
    for _ in range(most):
        if java is None:
            return None
        try:
            name = str(java.getClass().getName())  # type: ignore[attr-defined]
            if name.endswith("OutOfMemoryError"):
                message = java.getMessage()  # type: ignore[attr-defined]
                return f"{name}: {message}" if message else name
            java = java.getCause()  # type: ignore[attr-defined]
        except Exception:  # the JVM is gone, or not a Java object: the messages are all there is
            return None
    return None


def _text(error: BaseException) -> str:
    """``str(error)``, which for a py4j error asks the JVM for its stack trace: empty when that fails."""
    try:
        return str(error)
    except Exception:
        return ""


def _local_cores(master: str) -> int:
    """The cores of a ``local``, ``local[4]`` or ``local[*]`` master."""
    inside = master[len("local["):-1] if master.startswith("local[") and master.endswith("]") else "1"
    count = inside.split(",")[0].strip()
    if count == "*":
        return os.cpu_count() or 1
    return max(int(count), 1) if count.isdigit() else 1
