"""The same messaging workload against ejabberd (Debian's package), driven by slixmpp clients.

ejabberd is the XMPP server WhatsApp's first servers grew from. The benchmark installs Debian's
``ejabberd`` when it is missing (as root; services are not started by the install) and runs it in the
foreground through ``ejabberdctl`` with a configuration of its own: a private folder for its Mnesia
database and logs, the client listener and an HTTP API listener (account registration) on free
loopback ports, Erlang distribution on a free loopback port without epmd. Modules: message carbons
(XEP-0280), offline storage (``mod_offline``), stream management (XEP-0198, unacknowledged stanzas
go to offline storage when a session times out). No TLS, as Lockstep and Synapse run without it here.

Workload, as Lockstep's: sender accounts with one resource, recipient accounts with two resources
(both enable carbons and are available), so every ``<message type='chat'>`` to a recipient's bare JID
reaches exactly 2 resources: one directly, the other directly or as a carbon copy, whichever
ejabberd chooses (each counted once). Bodies are ciphertext-sized base64 text, as an OMEMO
(XEP-0384) message would carry. A sender sends the next message when ejabberd has acknowledged the
previous one (XEP-0198: the sender asks ``<r/>`` after each message and waits for ``<a/>``), as
Lockstep's senders wait for the reply to ``messages.send``.

The clients are slixmpp in a venv of their own in the benchmarks' cache folder (:func:`ensure_venv`):
it keeps slixmpp and its dependencies out of the project's environment, as Synapse is kept. Run with
that venv's Python, this file is the worker (see loadgen.py); it imports slixmpp only there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from loadgen import LoadClient, Sender, Tally, b64_decode, run_worker, venv_with

SLIXMPP = "slixmpp==1.17.0"
DOMAIN = "localhost"
EJABBERDCTL = "/usr/sbin/ejabberdctl"
CONFIG = """
hosts: [{domain}]
loglevel: warning
log_rotate_count: 0
auth_method: internal
auth_password_format: scram
listen:
  - port: {c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 4096
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls_required: false
  - port: {http_port}
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
acl:
  loopback:
    ip: [127.0.0.0/8]
access_rules:
  c2s:
    allow: all
  local:
    allow: all
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 1000000
api_permissions:
  "benchmark set-up from loopback":
    from: [mod_http_api]
    who:
      acl: loopback
    what: [register]
modules:
  mod_carboncopy: {{}}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_stream_mgmt:
    resend_on_timeout: if_offline
  mod_disco: {{}}
  mod_http_api: {{}}
"""
REQUEST_ACK = '<r xmlns="urn:xmpp:sm:3"/>'
CTL_CONFIG = """
ERLANG_NODE=lockstepbench@localhost
ERL_DIST_PORT={dist_port}
INET_DIST_INTERFACE=127.0.0.1
EJABBERD_BYPASS_WARNINGS=true
"""


def ensure_installed() -> str:
    """Debian's ejabberd, installed when missing (root only); returns its version."""
    if not Path(EJABBERDCTL).exists():
        if os.geteuid() != 0:
            raise SystemExit("ejabberd is not installed: run as root, or `apt-get install ejabberd`")
        print("installing Debian's ejabberd (its service is not started) ...", flush=True)
        policy = Path("/usr/sbin/policy-rc.d")
        made_policy = not policy.exists()
        if made_policy:  # keep the package's init script from starting a system-wide ejabberd
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", "ejabberd"], check=True, env=env)
        finally:
            if made_policy:
                policy.unlink()
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "ejabberd"], capture_output=True, text=True, check=True
    )
    return version.stdout


def ensure_venv(cache: Path) -> str:
    """A venv with slixmpp in ``cache`` (made once); returns its Python."""
    return venv_with(cache / "xmpp-venv", SLIXMPP)


@contextlib.contextmanager
def ejabberd() -> Iterator[tuple[int, int, int]]:
    """Start ejabberd in the foreground with a private configuration; yield ``(c2s port, HTTP port,
    pid of its Erlang VM)`` once it answers, and stop it (and remove its folder) afterwards."""
    from lockstep_servers import free_port

    c2s_port, http_port, dist_port = free_port(), free_port(), free_port()
    folder = Path(tempfile.mkdtemp(prefix="lockstep-bench-ejabberd-"))
    try:
        (folder / "logs").mkdir()
        (folder / "spool").mkdir()
        (folder / "ejabberd.yml").write_text(
            CONFIG.format(domain=DOMAIN, c2s_port=c2s_port, http_port=http_port)
        )
        (folder / "ejabberdctl.cfg").write_text(CTL_CONFIG.format(dist_port=dist_port))
        shutil.copy("/etc/ejabberd/inetrc", folder / "inetrc")
        if os.geteuid() == 0:  # ejabberdctl runs the node as the ejabberd user
            user = pwd.getpwnam("ejabberd")
            for path in [folder, *folder.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        process = subprocess.Popen(
            [
                EJABBERDCTL,
                "--config-dir",
                str(folder),
                "--config",
                str(folder / "ejabberd.yml"),
                "--ctl-config",
                str(folder / "ejabberdctl.cfg"),
                "--logs",
                str(folder / "logs"),
                "--spool",
                str(folder / "spool"),
                "foreground",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        vm = None
        try:
            deadline = time.monotonic() + 120
            while not _answers(http_port):
                if process.poll() is not None or time.monotonic() > deadline:
                    log = folder / "logs" / "ejabberd.log"
                    tail = log.read_text()[-3000:] if log.exists() else "(no log)"
                    raise RuntimeError(f"ejabberd did not start (exit {process.poll()}):\n{tail}")
                time.sleep(0.2)
            vm = _erlang_vm(process.pid)  # under su, in a session of its own: stopped by its pid
            if vm is None:
                raise RuntimeError("ejabberd answers, but its Erlang VM was not found under ejabberdctl")
            yield c2s_port, http_port, vm
        finally:
            _stop(vm)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _erlang_vm(root: int) -> int | None:
    """The pid of the beam.smp process started under ``root`` (ejabberdctl -> su -> beam.smp)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    todo = [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            if (Path("/proc") / str(pid) / "comm").read_text().strip() == "beam.smp":
                return pid
        todo += children.get(pid, [])
    return None


def _stop(pid: int | None) -> None:
    """SIGTERM (an orderly Erlang shutdown), SIGKILL after 30 s."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def _answers(http_port: int) -> bool:
    try:
        _api(http_port, "status", {})
    except urllib.error.HTTPError:
        return True  # not a permitted command, but the HTTP listener is up
    except OSError:
        return False
    return True


def _api(http_port: int, command: str, arguments: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/api/{command}",
        data=json.dumps(arguments).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"null")


def password(user: str) -> str:
    return "bench-" + user


def prepare(http_port: int, senders: int, recipients: int) -> list[dict[str, Any]]:
    """Accounts through ejabberd's HTTP API; returns one entry per resource for the workers."""
    devices: list[dict[str, Any]] = []
    for i in range(recipients):
        user = f"rcpt{i}"
        _api(http_port, "register", {"user": user, "host": DOMAIN, "password": password(user)})
        for resource in ("phone", "laptop"):
            devices.append({"account": f"{user}@{DOMAIN}", "user": user, "resource": resource})
    for i in range(senders):
        user = f"sndr{i}"
        _api(http_port, "register", {"user": user, "host": DOMAIN, "password": password(user)})
        devices.append(
            {"number": i, "to": f"rcpt{i % recipients}@{DOMAIN}", "user": user, "resource": "phone"}
        )
    return devices


# --- the worker (under the slixmpp venv's Python) ----------------------------------------------------


class XmppClient(LoadClient):
    def __init__(self) -> None:
        self.clients: list[Any] = []

    async def _connect(self, port: int, device: dict[str, Any], window: int) -> Any:
        import slixmpp

        jid = f"{device['user']}@{DOMAIN}/{device['resource']}"
        client = slixmpp.ClientXMPP(jid, password(device["user"]))
        client.enable_starttls = False
        client.enable_direct_tls = False
        client.enable_plaintext = True
        client.plugin["feature_mechanisms"].unencrypted_plain = True
        client.plugin["feature_mechanisms"].unencrypted_scram = True
        client.register_plugin("xep_0280")  # message carbons
        client.register_plugin("xep_0198", {"window": window})  # stream management
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def session_start(_event: Any) -> None:
            client.send_presence()
            await client.plugin["xep_0280"].enable()
            if not started.done():
                started.set_result(None)

        def failed(event: Any) -> None:
            if not started.done():
                started.set_exception(RuntimeError(f"{jid}: {event}"))

        client.add_event_handler("session_start", session_start)
        client.add_event_handler("failed_auth", failed)
        client.connect(host="127.0.0.1", port=port)
        await asyncio.wait_for(started, timeout=120)
        self.clients.append(client)
        return client

    async def start(self, spec: dict[str, Any], tally: Tally) -> list[Sender]:
        gate = asyncio.Semaphore(16)

        async def receiver(device: dict[str, Any]) -> None:
            async with gate:
                client = await self._connect(spec["port"], device, window=5)
            name = f"{device['account']}/{device['resource']}"

            def on_body(body: str) -> None:
                with contextlib.suppress(ValueError):
                    tally.delivered(name, b64_decode(body))

            def message(stanza: Any) -> None:
                if stanza["type"] == "chat" and stanza["body"]:
                    on_body(stanza["body"])

            def carbon(stanza: Any) -> None:  # a copy of a message ejabberd delivered to the other resource
                forwarded = stanza["carbon_received"]
                if forwarded["body"]:
                    on_body(forwarded["body"])

            client.add_event_handler("message", message)
            client.add_event_handler("carbon_received", carbon)

        async def sender(device: dict[str, Any]) -> Sender:
            async with gate:
                client = await self._connect(spec["port"], device, window=2**31)
            return Sender(int(device["number"]), device["to"], self._sender(client, device["to"]))

        await asyncio.gather(*(receiver(d) for d in spec["receivers"]))
        return list(await asyncio.gather(*(sender(d) for d in spec["senders"])))

    @staticmethod
    def _sender(client: Any, to: str) -> Any:
        import base64

        waiting: list[asyncio.Future[None]] = []

        def acked(stanza: Any) -> None:  # XEP-0198 acknowledges stanzas in order
            if stanza.name == "message" and waiting and not waiting[0].done():
                waiting.pop(0).set_result(None)

        client.add_event_handler("stanza_acked", acked)

        async def send(body: bytes) -> None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiting.append(done)
            client.send_message(mto=to, mbody=base64.b64encode(body).decode().rstrip("="), mtype="chat")
            # Ask for an ack after the message (slixmpp's own window would write <r/> before it).
            client.send(REQUEST_ACK)
            await asyncio.wait_for(done, timeout=60)

        return send

    async def close(self) -> None:
        for client in self.clients:
            client.disconnect()
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    run_worker(XmppClient())
