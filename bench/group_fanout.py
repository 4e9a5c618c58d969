"""Large groups (issue 15): time from a group send to the message decrypted on every member device, for
groups of 50, 256 and 1,024 members with two devices each (a phone and a linked laptop), the first
message (the Megolm key share to every device: Olm sessions from claimed one-time keys, in about 45
requests at 1,024 members) and later messages (one Megolm ciphertext the server copies to every device).

Every device is a real Python :class:`Messenger` with its own WebSocket: the sender in this process, the
receiving devices spread over ``--processes`` worker processes, the server in its own (bench_server.py:
SQLite unless ``--database``; its rate limits raised, since every device connects from 127.0.0.1).
Each receiving device handles its pushed events as the Python client does (decrypt, save its state,
acknowledge) and reports when it decrypted, on the system's monotonic clock. All devices share this
box's CPUs, so "decrypted on all devices" counts much of every device's work one after another; the
server's CPU and the devices' CPU per device are shown beside it, and the server's own clock on the
message (its /metrics): from a ``messages.send``'s arrival to stored and answered, and to its last copy
written to a socket (for a later message, its one send; a first message's key share is many).

With ``--browser`` one member's laptop is a real Chromium companion (bench/browser_member.py) and that
member's account administers each group. Measured for it: a Python member's first message (with its key
share) and later ones, from the send to drawn in the page; the page's own first message (its key share to
every Python device: one-time keys claimed, Olm sessions begun, the requests planned under the frame
limit) and later ones, from the click to the server's acceptance and to decrypted on every Python device;
and a member removed in the page's group panel, then a message (a new group session, shared with every
device left). Beside each: the page's main-thread time, its long tasks and its JavaScript heap.

    .venv/bin/python bench/group_fanout.py [--sizes 50,256,1024] [--later 5] [--processes 4] [--database URL]
    .venv/bin/python bench/group_fanout.py --browser [--sizes 1024] [--later 2]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_server import generous_server
from browser_member import BrowserMember, MainThread
from loadgen import CpuMeter
from prometheus_client.parser import text_string_to_metric_families

from group_of_devices import Devices, LoopThread, Person, approve_browser, load, make_people, opened
from lockstep.client.messenger import Kind, Messenger, new_message_id


@dataclass
class ServerClock:
    """The server's own timing of one message's ``messages.send`` requests (its /metrics)."""

    sends: int
    answered_s: float
    """From each send's arrival to its answer (stored in the database), summed over the sends."""
    last_written_s: float | None
    """From the send's arrival to its last copy written to a socket; for a message of one send."""


class ServerMetrics:
    """Reads the server's /metrics before and after a message."""

    def __init__(self, url: str) -> None:
        self.url = url + "/metrics"
        self._before: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url, timeout=30) as answer:
            text = answer.read().decode()
        wanted = {
            ("lockstep_request_seconds_count", "messages.send"): "sends",
            ("lockstep_request_seconds_sum", "messages.send"): "answered",
            ("lockstep_send_fanout_seconds_count", None): "fanouts",
            ("lockstep_send_fanout_seconds_sum", None): "written",
        }
        values = dict.fromkeys(wanted.values(), 0.0)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = wanted.get((sample.name, sample.labels.get("op")))
                if name is not None:
                    values[name] = sample.value
        return values

    def start(self) -> None:
        self._before = self.read()

    def clock(self) -> ServerClock:
        now = self.read()
        delta = {name: value - self._before.get(name, 0.0) for name, value in now.items()}
        sends = round(delta["sends"])
        one = sends == 1 and round(delta["fanouts"]) == 1
        return ServerClock(sends, delta["answered"], delta["written"] if one else None)


@dataclass
class Figure:
    members: int
    devices: int
    which: str
    accepted_s: float
    """From the send call to the server's answer to its last request (every copy queued)."""
    server: ServerClock
    half_decrypted_s: float
    """From the send call to the message decrypted on half of the devices (the median device)."""
    decrypted_s: float
    """From the send call to the message decrypted (and saved, and acknowledged) on the last device."""
    server_cpu_s: float
    """CPU time of the server's process, and of PostgreSQL's when it is the database."""
    client_cpu_ms_per_device: float
    """CPU time of the receiving devices' processes, per receiving device."""


async def listen(messenger: Messenger, report: Callable[[str, float], None]) -> None:
    """Handle ``messenger``'s pushed events as the Python client does; report each message decrypted."""
    connection = messenger.session.connection
    while True:
        event = await connection.next_event()
        await messenger.handle_events([event, *connection.drain_events()])
        for message in messenger.take_unreported():
            report(message.message_id, time.monotonic())


def device_worker(directories: list[str], reports: Any, ready: Any) -> None:
    """A process playing some of the devices: each handles its pushed events as the Python client does
    and reports ``(message id, time.monotonic())`` for every message it decrypted."""

    async def catch_up(messenger: Messenger) -> None:
        await messenger.inbox.fetch()  # what was queued while away
        for message in messenger.take_unreported():
            report(message.message_id, time.monotonic())

    async def run() -> None:
        async with opened([Path(d) for d in directories]) as devices:
            await asyncio.gather(*(catch_up(m) for m in devices.open.values()))
            tasks = [asyncio.create_task(listen(m, report)) for m in devices.open.values()]
            ready.set()
            await asyncio.gather(*tasks)

    def report(message_id: str, at: float) -> None:
        reports.put((message_id, at))

    asyncio.run(run())


class Reports:
    """What the device processes report, gathered by a thread of this process."""

    def __init__(self, queue: Any) -> None:
        self.times: dict[str, list[float]] = {}
        self._queue = queue
        self._lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            self.add(*self._queue.get())

    def add(self, message_id: str, at: float) -> None:
        with self._lock:
            self.times.setdefault(message_id, []).append(at)

    async def wait(self, message_id: str, devices: int, timeout: float = 900) -> list[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                got = list(self.times.get(message_id, ()))
            if len(got) >= devices:
                await asyncio.sleep(0.5)  # a duplicate would come in now
                with self._lock:
                    return list(self.times[message_id])
            await asyncio.sleep(0.005)
        raise TimeoutError(f"{message_id}: {len(got)} of {devices} devices")


async def create_group(sender: Messenger, members: list[Person]) -> str:
    group = await sender.session.connection.request(
        "groups.create", members=[load(p.phone).account.account_id for p in members[1:]]
    )
    return str(group["group_id"])


async def send(sender: Messenger, group_id: str, text: str) -> tuple[str, float, float]:
    """Send to the group; the message id, when the call began and when the server had accepted it all."""
    message_id = new_message_id()
    start = time.monotonic()
    await sender.send_group(group_id, Kind.TEXT, {"text": text}, message_id=message_id)
    return message_id, start, time.monotonic()


async def measured(
    sender: Messenger,
    group_id: str,
    size: int,
    which: str,
    meters: tuple[CpuMeter, ServerMetrics],
    reports: Reports,
) -> Figure:
    meter, metrics = meters
    metrics.start()
    meter.start()
    message_id, start, accepted = await send(sender, group_id, which)
    times = await reports.wait(message_id, 2 * size - 1)
    assert len(times) == 2 * size - 1, f"every device exactly once: {len(times)} of {2 * size - 1}"
    used = meter.used()
    figure = Figure(
        size,
        2 * size - 1,
        which,
        accepted - start,
        metrics.clock(),
        statistics.median(times) - start,
        max(times) - start,
        used["server"],
        used["devices"] * 1000 / (2 * size - 1),
    )
    print(figure, flush=True)
    return figure


def table(figures: list[Figure]) -> str:
    header = ["members x devices", "message", "accepted (sender's clock)", "server: sends answered"]
    header += ["server: last copy written", "decrypted on half the devices", "decrypted on all devices"]
    header += ["server CPU", "client CPU per device"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size in sorted({f.members for f in figures}):
        for which in ("first", "later"):
            rows = [f for f in figures if f.members == size and f.which == which]
            if not rows:
                continue
            label = which if len(rows) == 1 else f"{which} (median of {len(rows)})"
            cells = [f"{size} x 2 ({rows[0].devices} receiving)", label]
            cells += [f"{statistics.median(r.accepted_s for r in rows):.2f} s"]
            sends = f" ({rows[0].server.sends} sends)" if rows[0].server.sends != 1 else ""
            cells += [f"{statistics.median(r.server.answered_s for r in rows) * 1000:.0f} ms{sends}"]
            written = [r.server.last_written_s for r in rows if r.server.last_written_s is not None]
            cells += [f"{statistics.median(written) * 1000:.0f} ms" if written else "-"]
            cells += [f"{statistics.median(r.half_decrypted_s for r in rows):.2f} s"]
            cells += [f"{statistics.median(r.decrypted_s for r in rows):.2f} s"]
            cells += [f"{statistics.median(r.server_cpu_s for r in rows):.2f} s"]
            cells += [f"{statistics.median(r.client_cpu_ms_per_device for r in rows):.1f} ms"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class Fleet:
    """The worker processes playing the receiving devices."""

    def __init__(self, directories: list[str], processes: int) -> None:
        self.spawn = multiprocessing.get_context("spawn")
        self.queue = self.spawn.Queue()
        self.directories, self.processes = directories, processes
        self.workers: list[Any] = []

    def start(self) -> None:
        readies = []
        for index in range(self.processes):
            ready = self.spawn.Event()
            share = self.directories[index :: self.processes]
            worker = self.spawn.Process(target=device_worker, args=(share, self.queue, ready))
            worker.start()
            self.workers.append(worker)
            readies.append(ready)
        for ready in readies:
            if not ready.wait(timeout=3600):
                raise TimeoutError("the device processes did not start")

    def stop(self) -> None:
        for worker in self.workers:
            worker.terminate()
            worker.join(timeout=30)
        self.workers = []


def database(choice: str | None) -> tuple[str | None, list[int]]:
    """The server's database URL (None: SQLite) and the processes whose CPU counts as the server's
    with it: for 'postgres', a throwaway PostgreSQL (tests/pg_server.py), stopped when this exits."""
    if choice != "postgres":
        return choice, []
    from pg_server import start_postgres

    postgres = start_postgres()
    atexit.register(postgres.close)
    assert postgres.data_dir is not None
    postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    return postgres.create_database("fanout"), [postmaster]


@dataclass
class BrowserFigure:
    members: int
    which: str
    accepted_s: float
    """Python's send: from the call to the server's answer; the page's: from the click to its row
    saying the server took it (every request answered)."""
    reached_s: float
    """Python's send: to drawn in the page; the page's: to decrypted on the last Python device."""
    page: MainThread


def browser_table(figures: list[BrowserFigure]) -> str:
    header = ["members x devices", "message", "accepted", "drawn / decrypted on every device"]
    header += ["page main thread", "long tasks (longest, sum)", "JS heap"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for f in figures:
        cells = [f"{f.members} x 2", f.which, f"{f.accepted_s:.2f} s", f"{f.reached_s:.2f} s"]
        cells += [f"{f.page.busy_s:.2f} s"]
        cells += [f"{f.page.long_tasks} ({f.page.longest_ms:.0f} ms, {f.page.long_total_s:.2f} s)"]
        cells += [f"{f.page.heap_mb:.0f} MB"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def created_by(phone: Path, members: list[Person]) -> str:
    """A group made by the account of ``phone`` (its admin), with ``members``."""
    async with opened([phone]) as devices:
        return await create_group(devices.open[phone], [Person("", phone), *members])


class WithBrowser:
    """--browser: the groups are made by the account whose laptop is the page; person0's phone (in this
    process) is the Python member who sends to it, and the other Python devices are the fleet's."""

    def __init__(
        self, url: str, root: Path, loop: LoopThread, sizes: list[int], later: int, profile: bool
    ) -> None:
        self.url, self.root, self.loop, self.sizes, self.later = url, root, loop, sizes, later
        self.profile = profile
        self.figures: list[BrowserFigure] = []
        self.to_wall = time.time() - time.monotonic()  # the devices report on the monotonic clock

    def make_people(self) -> list[Person]:
        """person0 … person(N-2) with a phone and a Python laptop; the page's member with a phone only."""
        handles = [f"person{i}" for i in range(self.sizes[-1] - 1)]
        people = self.loop.run(make_people(self.url, self.root, handles, laptops=len(handles)), timeout=7200)
        (self.member,) = self.loop.run(make_people(self.url, self.root, ["browser"], laptops=0))
        return [*people, self.member]

    def link_and_make_groups(self, browser: BrowserMember, people: list[Person]) -> None:
        code = browser.screenshot_code(self.root / "qr.png")
        self.loop.run(approve_browser(self.member.phone, code, self.url))
        browser.wait_linked()
        self.groups = {
            size: self.loop.run(created_by(self.member.phone, people[: size - 1]), timeout=600)
            for size in self.sizes
        }

    def from_python(self, browser: BrowserMember, sender: Messenger, reports: Reports) -> None:
        """Person0's phone sends the first message (its key share) and later ones; the page draws them."""
        for size in self.sizes:
            browser.open_group(self.groups[size])
            for number, which in enumerate(["first"] + ["later"] * self.later):
                text = f"from Python to {size}, {which} {number}"
                browser.start()
                message_id, start, accepted = self.loop.run(
                    send(sender, self.groups[size], text), timeout=900
                )
                drawn = browser.shown_at(text) - (start + self.to_wall)
                times = self.loop.run(reports.wait(message_id, 2 * size - 2), timeout=1000)
                assert len(times) == 2 * size - 2, f"every Python device exactly once: {len(times)}"
                self.note(
                    BrowserFigure(size, f"Python's {which}", accepted - start, drawn, browser.reading())
                )

    def from_the_page(self, browser: BrowserMember, people: list[Person], reports: Reports) -> None:
        """The page sends its first message (its key share to every Python device) and later ones; then it
        removes a member, and its next message goes under a new group session to every device left."""
        for size in self.sizes:
            browser.open_group(self.groups[size])
            for number, which in enumerate(["first"] + ["later"] * self.later):
                text = f"from the page to {size}, {which} {number}"
                self.page_sends(browser, reports, size, which, text, removed=0)
            opened = browser.remove_member(people[1].handle)
            print(f"the member list of {size} opened in {opened * 1000:.0f} ms", flush=True)
            text = f"to {size} after a removal"
            self.page_sends(browser, reports, size, "after a removal", text, removed=2)

    def page_sends(
        self, browser: BrowserMember, reports: Reports, size: int, which: str, text: str, removed: int
    ) -> None:
        browser.start()
        if self.profile:
            browser.start_profile()
        browser.send(text)
        message_id, accepted = browser.sent(text)
        clicked = browser.clicked_at()
        if self.profile:
            print(f"where the page's time went until {which} was accepted (self time):", flush=True)
            for ms, where in browser.stop_profile():
                print(f"  {ms:8.0f} ms  {where}", flush=True)
        devices = 2 * size - 1 - removed
        times = self.loop.run(reports.wait(message_id, devices), timeout=1000)
        assert len(times) == devices, f"every Python device left exactly once: {len(times)} of {devices}"
        decrypted = max(times) + self.to_wall - clicked
        self.note(
            BrowserFigure(size, f"the page's {which}", accepted - clicked, decrypted, browser.reading())
        )

    def note(self, figure: BrowserFigure) -> None:
        self.figures.append(figure)
        print(figure, flush=True)

    def run(self, server: Any, processes: int) -> None:
        from playwright.sync_api import sync_playwright

        started = time.monotonic()
        people = self.make_people()
        print(f"{len(people)} accounts: {time.monotonic() - started:.0f} s", flush=True)
        sender_phone = people[0].phone
        fleet = Fleet([str(d) for p in people for d in p.devices if d != sender_phone], processes)
        reports = Reports(fleet.queue)
        devices = Devices()
        with sync_playwright() as playwright:
            browser = BrowserMember(playwright, self.url)
            try:
                self.link_and_make_groups(browser, people)
                self.loop.run(devices.add([sender_phone]))
                sender = devices.open[sender_phone]
                fleet.start()
                self.from_python(browser, sender, reports)
                # The sender sends no more: from now on its phone is one more device the page sends to.
                asyncio.run_coroutine_threadsafe(listen(sender, reports.add), self.loop.loop)
                self.from_the_page(browser, people, reports)
                print(f"DOM elements in the page at the end: {browser.dom_nodes()}", flush=True)
            finally:
                if server.poll() is not None:
                    print(f"the server exited ({server.returncode})", flush=True)
                browser.close()
                fleet.stop()
                self.loop.run(devices.close_all())
        print(browser_table(self.figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,256,1024", help="group sizes in members (two devices each)")
    parser.add_argument("--later", type=int, default=5, help="later messages per group, after the first")
    parser.add_argument("--processes", type=int, default=4, help="processes playing the receiving devices")
    parser.add_argument(
        "--database",
        help="a postgresql:// URL, or 'postgres' for a throwaway one (default: SQLite in a temporary folder)",
    )
    parser.add_argument("--browser", action="store_true", help="one member's laptop is a Chromium companion")
    parser.add_argument("--profile", action="store_true", help="with --browser: where the page's time goes")
    args = parser.parse_args()
    args.database, database_pids = database(args.database)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    loop = LoopThread()
    if args.browser:
        with tempfile.TemporaryDirectory() as root, generous_server(args.database) as (url, server):
            bench = WithBrowser(url, Path(root), loop, sizes, args.later, args.profile)
            try:
                bench.run(server, args.processes)
            finally:
                loop.close()
        return
    figures: list[Figure] = []
    catch_up = ""
    with tempfile.TemporaryDirectory() as root, generous_server(args.database) as (url, server):
        started = time.monotonic()
        handles = [f"person{i}" for i in range(sizes[-1])]
        people = loop.run(make_people(url, Path(root), handles, laptops=len(handles)), timeout=7200)
        print(
            f"{len(people)} accounts, a phone and a laptop each: {time.monotonic() - started:.0f} s",
            flush=True,
        )
        fleet = Fleet([str(d) for p in people for d in p.devices if d != people[0].phone], args.processes)
        reports = Reports(fleet.queue)
        devices = Devices()
        loop.run(devices.add([people[0].phone]))
        sender = devices.open[people[0].phone]
        try:
            fleet.start()
            meter = CpuMeter(
                {"server": [server.pid, *database_pids], "devices": [w.pid for w in fleet.workers]}
            )
            meters = (meter, ServerMetrics(url))
            for size in sizes:
                group_id = loop.run(create_group(sender, people[:size]))
                # Every device online, the largest group's too: a request's timeout grows with its size
                # (client/connection.py), so 2,047 devices verifying the sender at once no longer cut it.
                figures.append(loop.run(measured(sender, group_id, size, "first", meters, reports)))
                for _ in range(args.later):
                    figures.append(loop.run(measured(sender, group_id, size, "later", meters, reports)))
        finally:
            fleet.stop()
            loop.run(devices.close_all())
            loop.close()
    print(table(figures))
    print(catch_up)


if __name__ == "__main__":
    main()
