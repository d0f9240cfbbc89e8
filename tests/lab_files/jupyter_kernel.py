"""Run inside a dev container (docker exec -i dev python3 - ARGS < this file).

    start SECONDS   start a kernel through Jupyter's REST API, run a cell with
                    time.sleep(SECONDS) in it, return once it is busy; print its id
    stop ID         shut that kernel down

The token is read from $JUPYTER_TOKEN_FILE, never taken on the command line.
"""

import asyncio
import json
import os
import sys
import urllib.request
import uuid

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

BASE = f"127.0.0.1:{os.environ.get('JUPYTER_PORT', '8888')}"
with open(os.environ["JUPYTER_TOKEN_FILE"]) as f:
    AUTH = {"Authorization": f"token {f.read().strip()}"}


def api(method: str, path: str) -> bytes:
    data = b"{}" if method == "POST" else None
    request = urllib.request.Request(
        f"http://{BASE}/api/{path}",
        data=data,
        method=method,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


async def run_cell(kernel: str, code: str) -> None:
    ws = await websocket_connect(
        HTTPRequest(f"ws://{BASE}/api/kernels/{kernel}/channels", headers=AUTH)
    )
    session = uuid.uuid4().hex
    ws.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": uuid.uuid4().hex,
                    "username": "test",
                    "session": session,
                    "msg_type": "execute_request",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    while True:
        message = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        if message.get("msg_type") == "execute_input":
            break  # the cell runs: the kernel is busy until it ends
    ws.close()


if sys.argv[1] == "start":
    kernel = json.loads(api("POST", "kernels"))["id"]
    asyncio.run(run_cell(kernel, f"import time; time.sleep({int(sys.argv[2])})"))
    print(kernel)
else:
    api("DELETE", f"kernels/{sys.argv[2]}")
