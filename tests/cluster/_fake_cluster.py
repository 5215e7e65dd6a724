"""The fake multi-node autoscaling cluster of docs/cluster.md, as the test sees it: the documented
commands read from the page, node counts from the dashboard, and every process found and ended
by PID.

`ray.cluster_utils.AutoscalingCluster` cannot be used: its config template is missing from the
wheel and its start/shutdown run `ray stop --force`, which would end every other engineer's Ray
on this machine. The documented head runs in a session of its own (`setsid`) with a temp folder
of its own; the test ends exactly the processes of that session plus any process whose command
line names that temp folder.

Where the fake nodes live: the `fake_multinode` provider runs inside the head's autoscaler
(`monitor.py`) and starts each worker node in-process with `ray._private.node.Node(...)`; it keeps
the node table only in that process's memory (unlike the docker variant, there is no state file).
Those raylets and their workers inherit the head's session and `--temp-dir`, which is how they
are found here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "cluster.md"
SECTION = "## Try autoscaling on one machine"


@dataclass
class Walkthrough:
    """The commands of the guide's section, in order, and the one that stops the cluster."""

    commands: list[str]
    stop: str

    def command(self, pattern: str) -> str:
        """The one command that matches `pattern` (a regular expression)."""
        (found,) = [c for c in self.commands if re.search(pattern, c)]
        return found

    def exported(self) -> dict[str, str]:
        """The variables of its `export` line."""
        words = shlex.split(self.command(r"^export "))[1:]
        return dict(word.split("=", 1) for word in words)

    def option(self, name: str) -> str:
        """The value of `--NAME=VALUE` in the head's `ray start`."""
        (value,) = re.findall(rf"--{name}=(\S+?)['\s]", self.command(r"ray start --head"))
        return value


def walkthrough(guide: Path = GUIDE) -> Walkthrough:
    """Read the section's two bash blocks: the commands (comments and blank lines dropped) and
    the command that stops the cluster."""
    text = guide.read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    commands = [
        line.strip()
        for line in blocks[0].splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return Walkthrough(commands, blocks[1].strip())


@dataclass
class FakeCluster:
    """The running documented cluster: where its dashboard is, and what belongs to it."""

    temp_dir: Path
    dashboard_port: int
    token_file: Path
    session_ids: set[int] = field(default_factory=set)
    #: `pymp-*` folders its processes listened in (a Ray head's dashboard keeps one), noted
    #: while they run and removed by `kill_all`.
    folders: set[Path] = field(default_factory=set)

    def note_folders(self) -> None:
        """Note the `pymp-*` folders the cluster's live processes listen in."""
        from resnetctl.launch.embedded import multiprocessing_folders

        for proc in self.processes():
            self.folders |= multiprocessing_folders(proc.pid)

    def alive_nodes(self) -> list[dict[str, Any]]:
        """The ALIVE nodes, from the dashboard's state API (raises until the dashboard is up)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.dashboard_port}/api/v0/nodes?limit=100&detail=true",
            headers={"Authorization": f"Bearer {self.token_file.read_text().strip()}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = json.load(response)
        nodes = payload["data"]["result"]["result"]
        return [n for n in nodes if n.get("state") == "ALIVE"]

    def processes(self) -> list[psutil.Process]:
        """Every live process of the cluster: those of its sessions, and whatever names its temp
        folder (raylets, workers, agents of fake nodes)."""
        marker = str(self.temp_dir)
        found = []
        # `name` is read here, with the rest: a process that ends before a caller asks for its
        # name then still has one (psutil keeps what process_iter read in `info`).
        for proc in psutil.process_iter(["pid", "cmdline", "name"]):
            if proc.pid == os.getpid():
                continue
            try:
                mine = os.getsid(proc.pid) in self.session_ids
                if not mine:
                    mine = any(marker in part for part in proc.info["cmdline"] or [])
                if mine and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        return found

    def kill_all(self, grace: float = 10.0) -> list[psutil.Process]:
        """SIGTERM, then SIGKILL, every process of the cluster, and remove the `pymp-*` folders
        they listened in; returns survivors (none)."""
        self.note_folders()
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=grace)
        for proc in alive + self.processes():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=grace)
        deadline = time.monotonic() + grace
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
        return left

    def keep_logs(self, logs: Path) -> None:
        """Copy the autoscaler's log (why a node was, or was not, started) next to the test's."""
        for name in ("monitor.log", "monitor.out", "monitor.err"):
            for found in self.temp_dir.glob(f"session_*/logs/{name}"):
                with contextlib.suppress(OSError):
                    (logs / name).write_bytes(found.read_bytes())
