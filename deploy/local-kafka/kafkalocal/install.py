"""Fetch the Kafka broker jars from Maven Central with ``mvn dependency:copy-dependencies``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from . import KAFKA_VERSION
from .paths import libs_dir

POM_FILE = Path(__file__).resolve().parent.parent / "pom.xml"
COMPLETE_MARKER = ".complete"


class InstallError(RuntimeError):
    """The broker jars could not be fetched."""


def jars_present() -> bool:
    """Tell whether an earlier install finished (the marker is written only after mvn succeeded)."""
    marker = libs_dir() / COMPLETE_MARKER
    return marker.is_file() and marker.read_text().strip() == KAFKA_VERSION


def install() -> Path:
    """Return the jar folder, running mvn first when the jars are missing.

    Later runs find the marker file and never call mvn, so they work offline.
    """
    target = libs_dir()
    if jars_present():
        return target

    mvn = shutil.which("mvn")
    if mvn is None:
        raise InstallError(
            f"mvn not found on PATH; install Maven 3.6+ or copy the Kafka {KAFKA_VERSION} "
            f"jars into {target} and write '{KAFKA_VERSION}' to {target / COMPLETE_MARKER}"
        )

    # Download into a scratch folder and rename it at the end, so an interrupted download
    # never leaves a half-filled jar folder behind.
    scratch = target.with_name(target.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    command = [
        mvn, "-B", "-q", "-f", str(POM_FILE),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={scratch}",
        "-DincludeScope=runtime",
    ]
    print(f"kafka-local: fetching Kafka {KAFKA_VERSION} jars with mvn into {target}", file=sys.stderr)
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise InstallError(f"mvn exited with status {result.returncode}:\n{tail}")

    (scratch / COMPLETE_MARKER).write_text(KAFKA_VERSION + "\n")
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    return target
