"""One screenshot of a page of the MLflow UI in headless Chromium, driven over the DevTools
protocol (aiohttp's websocket client) rather than `chromium --screenshot`, so that the picture
is taken once the page has drawn its charts, and with MLflow's assistant panel closed (it opens
by itself on a first visit from localhost, and would cover a third of the page).

    python docs/screenshot.py URL OUT.png [--chromium chromium] [--width 1600 --height 1000]\
        [--until charts|table]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import aiohttp

CLOSE_ASSISTANT = (
    "(() => { const b = document.querySelector("
    "'[data-component-id=\"mlflow.assistant.chat_panel.close\"]'); if (b) { b.click(); "
    "return true; } return false; })()"
)
# Charts are drawn into <canvas> or <svg>; spinners are gone once every chart has drawn.
CHARTS_DRAWN = (
    "(() => document.querySelectorAll('.js-plotly-plot, canvas').length > 0 && "
    'document.querySelectorAll(\'[class*="Spinner"], [role="progressbar"]\').length === 0)()'
)
# The runs table (ag-grid) is drawn once its first row is.
TABLE_DRAWN = "(() => document.querySelectorAll('.ag-row').length > 0)()"
READY = {"charts": CHARTS_DRAWN, "table": TABLE_DRAWN}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _shoot(
    debug: str, url: str, out: str, width: int, height: int, wait: float, ready: str
) -> None:
    with urllib.request.urlopen(f"{debug}/json/list") as answer:  # noqa: S310 (loopback)
        page = next(t for t in json.load(answer) if t["type"] == "page")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 10**6))

            async def send(method: str, **params: object) -> dict:
                message_id = next(ids)
                await ws.send_json({"id": message_id, "method": method, "params": params})
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("id") == message_id:
                        return data.get("result", {})
                raise RuntimeError("DevTools connection closed")

            async def evaluate(expression: str) -> object:
                result = await send("Runtime.evaluate", expression=expression, returnByValue=True)
                return result.get("result", {}).get("value")

            await send(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            await send("Page.enable")
            await send("Page.navigate", url=url)
            deadline = time.monotonic() + wait
            closed = False
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                closed = closed or bool(await evaluate(CLOSE_ASSISTANT))
                if closed and await evaluate(READY[ready]):
                    break
            await asyncio.sleep(2)  # the last chart's animation
            shot = await send("Page.captureScreenshot", format="png")
    with open(out, "wb") as file:
        file.write(base64.b64decode(shot["data"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "chromium"))
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--wait", type=float, default=40.0, help="seconds at most per page")
    parser.add_argument("--until", choices=sorted(READY), default="charts", help="what to wait for")
    args = parser.parse_args()
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="chromium-")
    browser = subprocess.Popen(
        [
            args.chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={args.width},{args.height}",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        debug = f"http://127.0.0.1:{port}"
        for _ in range(60):
            try:
                urllib.request.urlopen(f"{debug}/json/version", timeout=2).close()  # noqa: S310
                break
            except OSError:
                time.sleep(0.5)
        asyncio.run(
            _shoot(debug, args.url, args.out, args.width, args.height, args.wait, args.until)
        )
    finally:
        os.killpg(browser.pid, signal.SIGKILL)  # the browser and its renderers
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
