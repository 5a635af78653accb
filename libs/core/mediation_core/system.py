"""The whole system on one machine: ``mediation run`` (what ``make run`` calls).

Starts the local stack (or uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL), the Zipkin trace
UI, the five services as separate processes, and the demo generator; stops everything it
started on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import stack
from .settings import DEFAULT_PORTS

SERVICES = ["intake", "routing", "cases", "alerts", "reporting"]
LOGS = stack.STACK_DIR / "logs"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def namespaced_env(ns: str, urls: stack.StackUrls, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the five services in their own namespace: topic prefix, schemas,
    consumer groups, key vault schema and free HTTP ports (tests and benchmarks)."""
    env = dict(os.environ if base is None else base)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": urls.kafka_bootstrap,
        "DATABASE_URL": urls.database_url,
        "MEDIATION_TOPIC_PREFIX": f"{ns}.",
        "MEDIATION_KEYVAULT_SCHEMA": f"keyvault_{ns}"[:63],
    })
    for s in SERVICES:
        env[f"MEDIATION_{s.upper()}_SCHEMA"] = f"{s}_{ns}"[:63]
        env[f"MEDIATION_{s.upper()}_GROUP"] = f"{ns}.{s}"
        env[f"MEDIATION_{s.upper()}_PORT"] = str(free_port())
    return env


class ServiceProcesses:
    """The five services as child processes (each its own process, as in production)."""

    def __init__(self, env: dict[str, str], services: list[str] = SERVICES) -> None:
        self.env = env
        self.services = services
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        out = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the child)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "mediation_core.cli", "serve", name],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)

    def start_all(self) -> None:
        for name in self.services:
            self.start(name)

    def port(self, name: str) -> int:
        return int(self.env.get(f"MEDIATION_{name.upper()}_PORT", DEFAULT_PORTS[name]))

    def ready(self, name: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port(name)}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.services)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                p = self.procs[name]
                if p.poll() is not None:
                    raise stack.StackError(f"service {name} exited with code {p.returncode}; "
                                           f"see {LOGS / (name + '.log')}")
                if self.ready(name):
                    pending.discard(name)
            time.sleep(0.3)
        if pending:
            raise stack.StackError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[name]
        if p.poll() is None:
            os.killpg(p.pid, sig)
            p.wait(30)

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _stop_on_sigterm(*_args) -> None:
    raise SystemExit(0)  # unwinds through the finally that stops the services


def _cmd_run(args: argparse.Namespace) -> int:
    """Ctrl-C or SIGTERM stops every process this command started: the services, the trace
    UI and the local broker and database if they were not running before (their data stays
    in .stack for the next run)."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started_stack = stack.external_urls() is None and not (
        stack.Kafka().running_pid() and stack.Postgres().running_pid())
    started_zipkin = not args.no_traces and not stack.Zipkin().running_pid()
    try:
        return _run(args)
    finally:
        if started_zipkin:
            stack.Zipkin().stop()
        if started_stack:
            print("stopping the local broker and database it started", file=sys.stderr)
            stack.Kafka().stop()
            stack.Postgres().stop()


def _run(args: argparse.Namespace) -> int:
    try:
        urls = stack.up()
    except stack.StackError as err:
        print(f"mediation run: {err}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.setdefault("KAFKA_BOOTSTRAP_SERVERS", urls.kafka_bootstrap)
    env.setdefault("DATABASE_URL", urls.database_url)
    receiver = None
    if not args.no_demo:
        # the authorities' side: a local webhook receiver, named in the demo directory
        from .demo_activity import AuthorityReceiver, alerts_config

        LOGS.mkdir(parents=True, exist_ok=True)
        receiver = AuthorityReceiver(LOGS / "authority-receiver.log")
        env.setdefault("MEDIATION_ALERTS_CONFIG", str(alerts_config(receiver)))
        # published (masked) views are a periodic release, hourly by default: every 30 s here
        env.setdefault("MEDIATION_REPORTING_PUBLISH_SECONDS", "30")
    zipkin = stack.Zipkin()
    if not args.no_traces:
        try:
            zipkin.start()
            env.setdefault("MEDIATION_ZIPKIN_ENDPOINT", zipkin.endpoint)
        except stack.StackError as err:
            print(f"trace UI not started: {err}", file=sys.stderr)
    procs = ServiceProcesses(env)
    procs.start_all()
    try:
        procs.wait_ready()
        print(banner(procs, zipkin), flush=True)
        if receiver is not None:
            print(f"  authorities' webhook receiver: http://127.0.0.1:{receiver.port}/ "
                  f"(deliveries: {LOGS / 'authority-receiver.log'})", flush=True)
        if not args.no_demo:
            from . import demo

            demo.run_demo(env, duration=args.duration, rate=args.rate)
            print("demo data published; services keep running (Ctrl-C to stop)", flush=True)
        while all(p.poll() is None for p in procs.procs.values()):
            time.sleep(1)
        dead = [n for n, p in procs.procs.items() if p.poll() is not None]
        print(f"service(s) stopped: {', '.join(dead)}; see {LOGS}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except stack.StackError as err:
        print(f"mediation run: {err}", file=sys.stderr)
        return 2
    finally:
        procs.stop_all()


def banner(procs: ServiceProcesses, zipkin: stack.Zipkin) -> str:
    lines = ["", "mediation is running:"]
    for name in SERVICES:
        lines.append(f"  {name:<10} http://127.0.0.1:{procs.port(name)}/docs   "
                     f"(/healthz /readyz /metrics)   log: {LOGS / (name + '.log')}")
    lines.append(f"  traces     {zipkin.ui()}")
    lines.append(f"  postgres   {stack.local_urls().database_url}   (schema reporting: indicator views)")
    lines.append("  a referral's trace: .venv/bin/mediation trace REFERRAL_ID")
    return "\n".join(lines)


def _cmd_trace(args: argparse.Namespace) -> int:
    print(stack.Zipkin().ui(f"mediation.key={args.referral_id}"))
    return 0


def register(sub) -> None:
    r = sub.add_parser("run", help="the whole system: stack, trace UI, five services, demo")
    r.add_argument("--no-demo", action="store_true")
    r.add_argument("--no-traces", action="store_true")
    r.add_argument("--duration", type=float, default=60.0, help="demo: seconds of activity")
    r.add_argument("--rate", type=float, default=20.0, help="demo: referrals per second")
    r.set_defaults(func=_cmd_run)
    t = sub.add_parser("trace", help="the Zipkin URL of one referral's journey")
    t.add_argument("referral_id")
    t.set_defaults(func=_cmd_trace)


__all__ = ["ServiceProcesses", "register", "Path"]
