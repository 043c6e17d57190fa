"""Run inside ``unshare -n``: bootstrap a bundle with only /usr/bin/python3, serve, chat; print timings.

    python airgap_driver.py BOOTSTRAP.sh BUNDLE.tar ORG.pub.pem ORG.pem PREFIX INCREMENTAL.tar

Prints one JSON document: the phases' wall times, the install result, the chat answer, and whether
any address outside loopback was reachable (it must not be).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai


def no_route() -> bool:
    try:
        socket.create_connection(("1.1.1.1", 443), timeout=2).close()
    except OSError:
        return True
    return False


def main() -> None:
    bootstrap, bundle, pub, key, prefix, incremental = sys.argv[1:7]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    times: dict[str, float] = {}
    isolated = no_route()
    t0 = time.perf_counter()
    boot = subprocess.run(
        ["sh", bootstrap, bundle, pub, prefix, "--", "--key", key, "--policy", "enterprise", "--json"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": "/usr/bin/python3",
                                             "HOME": prefix + ".home", "HF_HUB_OFFLINE": "1"},
    )
    times["bootstrap_install_s"] = time.perf_counter() - t0
    if boot.returncode != 0:
        print(json.dumps({"failed": "bootstrap", "stdout": boot.stdout, "stderr": boot.stderr[-4000:]}))
        return
    bastion = str(Path(prefix) / "current" / "venv" / "bin" / "bastion")
    env = {"PATH": "/usr/bin:/bin", "BASTION_HOME": f"{prefix}/data", "BASTION_CONFIG": f"{prefix}/bastion.toml",
           "BASTION_KEY_HOME": f"{prefix}/keys",
           "HF_HUB_OFFLINE": "1", "HOME": prefix + ".home"}
    t0 = time.perf_counter()
    again = subprocess.run([bastion, "bundle", "install", bundle, "--trust", pub, "--prefix", prefix, "--key", key,
                            "--policy", "enterprise", "--json"], capture_output=True, text=True, env=env)
    times["reinstall_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    incr = subprocess.run([bastion, "bundle", "install", incremental, "--trust", pub, "--prefix", prefix, "--key",
                           key, "--policy", "enterprise", "--json"], capture_output=True, text=True, env=env)
    times["incremental_install_s"] = time.perf_counter() - t0
    api_key = json.loads(subprocess.run([bastion, "keys", "create", "tester", "-m", "*", "--json"],
                                        capture_output=True, text=True, env=env, check=True).stdout)["key"]
    t0 = time.perf_counter()
    log = open(Path(prefix) / "serve.log", "wb")
    server = subprocess.Popen([bastion, "serve", "--port", "18931"], env=env, stdout=log, stderr=log)
    answer = None
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen("http://127.0.0.1:18931/healthz", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(0.2)
        times["serve_ready_s"] = time.perf_counter() - t0
        client = openai.OpenAI(base_url="http://127.0.0.1:18931/v1", api_key=api_key, max_retries=0, timeout=120)
        t0 = time.perf_counter()
        reply = client.chat.completions.create(model="smollm2", max_tokens=24,
                                               messages=[{"role": "user", "content": "What is the capital of France?"}])
        times["chat_s"] = time.perf_counter() - t0
        answer = {"model": reply.model, "content": reply.choices[0].message.content,
                  "completion_tokens": reply.usage.completion_tokens if reply.usage else None}
    finally:
        server.terminate()
        server.wait(30)
    print(json.dumps({"isolated": isolated, "times": times, "install": _json(boot.stdout),
                      "reinstall": _json(again.stdout),
                      "incremental": _json(incr.stdout), "answer": answer, "stderr": boot.stderr[-2000:]}))


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return {"unparsed": text[-3000:]}


if __name__ == "__main__":
    main()
