"""What the embedded Ray's processes leave in the temp folder, and `embedded.stop` removes: the
`pymp-*` folder of a multiprocessing forkserver (Ray's dashboard starts its modules through
one), which Python removes at a normal exit and a process ended by a signal never does."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resnetctl.launch.embedded import multiprocessing_folders
from tests.processes import kill_group

FORKSERVER = (
    "import time\n"
    "from multiprocessing import forkserver\n"
    "forkserver.ensure_running()\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def test_the_forkserver_folder_of_a_process_of_ours_is_found_by_its_socket() -> None:
    before = set(Path(tempfile.gettempdir()).glob("pymp-*"))
    server = subprocess.Popen(
        [sys.executable, "-c", FORKSERVER],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        made = set(Path(tempfile.gettempdir()).glob("pymp-*")) - before
        assert len(made) == 1  # the forkserver's listening socket lives in it
        deadline = time.monotonic() + 10
        while not (found := multiprocessing_folders()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert found == made
        server.send_signal(signal.SIGKILL)  # as Ray ends its dashboard: no exit handlers run
        server.wait(timeout=30)
        (folder,) = made
        assert folder.is_dir()  # what every Ray start left behind
    finally:
        kill_group(server)
        for folder in set(Path(tempfile.gettempdir()).glob("pymp-*")) - before:
            shutil.rmtree(folder, ignore_errors=True)
