#!/usr/bin/env python3
"""A JSON-RPC client of the Anthill master using the standard library only
(urllib, json, base64): the proof that a non-Go script can drive the API.

Environment: ANTHILL_MASTER (e.g. http://127.0.0.1:7070) and ANTHILL_TOKEN.
It submits a batch, waits for it, checks the results, checks two errors
and prints "ok". Any mismatch exits with status 1 and says why.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.request

MASTER = os.environ["ANTHILL_MASTER"].rstrip("/")
TOKEN = os.environ["ANTHILL_TOKEN"]
_next_id = 0


class RPCError(Exception):
    def __init__(self, status, error):
        super().__init__("%d %s (HTTP %d)" % (error["code"], error["message"], status))
        self.status = status
        self.code = error["code"]
        self.message = error["message"]
        self.data = error.get("data")


def call(method, params, token=TOKEN):
    """Calls method with named params; returns the result or raises RPCError."""
    global _next_id
    _next_id += 1
    body = json.dumps({"jsonrpc": "2.0", "id": _next_id, "method": method, "params": params}).encode()
    req = urllib.request.Request(MASTER + "/rpc", data=body, method="POST", headers={
        "Authorization": "Bearer " + token,
        "Content-Type": "application/json",
    })
    try:
        with urllib.request.urlopen(req, timeout=90) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:  # 401, 405, 413 carry a JSON-RPC body too
        status, raw = e.code, e.read()
    reply = json.loads(raw)
    check(reply.get("jsonrpc") == "2.0", "not a JSON-RPC 2.0 response: %r" % raw)
    if "error" in reply:
        raise RPCError(status, reply["error"])
    check(reply.get("id") == _next_id, "response id %r, want %r" % (reply.get("id"), _next_id))
    return reply["result"]


def b64(s):
    return base64.b64encode(s.encode()).decode()


def unb64(s):
    return base64.b64decode(s).decode() if s is not None else None


def check(cond, why):
    if not cond:
        print("FAIL: " + why, file=sys.stderr)
        sys.exit(1)


def main():
    info = call("Master.Info", {})
    check(info["protocol"] >= 1 and info["version"], "Master.Info: %r" % info)

    words = ["alpha", "beta", "gamma", "delta"]
    tasks = [{"kind": "echo", "payload": b64(w)} for w in words]
    tasks.append({"kind": "fail", "payload": b64("no luck"), "max_attempts": 1})
    ids = call("Tasks.SubmitBatch", {"app": "python", "tasks": tasks})["ids"]
    check(len(ids) == len(tasks), "SubmitBatch returned %r" % ids)

    # Long poll until everything is final (each call waits at most 30 s).
    finished = {}
    for _ in range(10):
        res = call("Tasks.Wait", {"ids": ids, "timeout_ms": 30000})
        finished = {t["id"]: t for t in res["tasks"]}
        if res["done"]:
            break
    check(len(finished) == len(ids), "only %d of %d tasks finished" % (len(finished), len(ids)))

    for i, w in zip(ids, words):
        t = finished[i]
        check(t["state"] == "done" and unb64(t["result"]) == w,
              "task %d: state %s, result %r, want done %r" % (i, t["state"], unb64(t["result"]), w))
    failed = finished[ids[-1]]
    check(failed["state"] == "failed" and failed["error"] == "no luck",
          "fail task: %r" % failed)

    one = call("Tasks.Get", {"id": ids[0]})
    check(unb64(one["payload"]) == "alpha" and one["app"] == "python" and one["finished_at"],
          "Tasks.Get: %r" % one)

    # Errors: an unknown task, a bad parameter, a wrong token.
    try:
        call("Tasks.Get", {"id": 42})
        check(False, "Tasks.Get of task 42 succeeded")
    except RPCError as e:
        check(e.code == -32004 and "task 42 not found" in e.message, "unknown task: %s" % e)
    try:
        call("Tasks.Submit", {"app": "python", "kind": ""})
        check(False, "an empty kind was accepted")
    except RPCError as e:
        check(e.code == -32602 and "kind" in e.message and e.data["field"] == "kind", "empty kind: %s" % e)
    try:
        call("Master.Info", {}, token="not-the-token")
        check(False, "a wrong token was accepted")
    except RPCError as e:
        check(e.status == 401 and e.code == -32001, "wrong token: %s" % e)

    print("ok")


if __name__ == "__main__":
    main()
