"""A tiny Flask app for waka's docs, tests and benchmarks.

GET / answers with GREETING and the release mark, so a test can tell which build is serving.
Every worker prints a line when it starts and one per request, so log tests can find them.
"""

import os

from flask import Flask, Response, request

# Tests rewrite this line to tell one build from the next: keep it a plain string literal.
GREETING = "Hello from waka!"

app = Flask(__name__)

print(f"hello-flask: worker {os.getpid()} started", flush=True)


def release_mark() -> str:
    return os.environ.get("RELEASE_MARK", "")


@app.get("/")
def index() -> Response:
    mark = release_mark()
    body = f"{GREETING} release={mark}\n" if mark else f"{GREETING}\n"
    print(f"hello-flask: served {request.path} by worker {os.getpid()}", flush=True)
    return Response(body, mimetype="text/plain")
