"""The ``mediation`` command. Services add their own subcommands through the
``mediation.commands`` entry-point group (a ``register(subparsers)`` function each)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from importlib.metadata import entry_points

from . import stack

SERVICES = ["intake", "routing", "cases", "alerts", "reporting"]


def _cmd_stack(args: argparse.Namespace) -> int:
    try:
        if args.action == "up":
            urls = stack.up()
            print(json.dumps({"kafka_bootstrap": urls.kafka_bootstrap,
                              "database_url": urls.database_url}))
        elif args.action == "down":
            stack.down()
        elif args.action == "jars":
            stack.Kafka().ensure_jars()
        elif args.action == "status":
            st = stack.status()
            if args.quiet:
                return 0 if st["kafka"]["pid"] and st["postgres"]["pid"] else 1  # type: ignore[index]
            print(json.dumps(st, indent=2))
    except stack.StackError as err:
        print(f"mediation stack {args.action}: {err}", file=sys.stderr)
        return 2
    return 0


def load_service(name: str):
    """The ``build(settings)`` function of a service package."""
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    return importlib.import_module(f"mediation_{name}.service").build


def _cmd_serve(args: argparse.Namespace) -> int:
    from . import telemetry
    from .settings import from_env

    telemetry.setup_logging(args.name)
    build = load_service(args.name)
    svc = build(from_env(args.name))
    try:
        asyncio.run(svc.run_forever())
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_schemas(args: argparse.Namespace) -> int:
    from .contracts import export_all

    for path in export_all(args.out):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mediation", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("stack", help="the local Kafka broker and PostgreSQL")
    sp.add_argument("action", choices=["up", "down", "status", "jars"])
    sp.add_argument("--quiet", action="store_true", help="status: exit code only")
    sp.set_defaults(func=_cmd_stack)

    sv = sub.add_parser("serve", help="run one service until SIGTERM")
    sv.add_argument("name", choices=SERVICES)
    sv.set_defaults(func=_cmd_serve)

    sc = sub.add_parser("schemas", help="export JSON Schemas and AsyncAPI documents")
    sc.add_argument("--out", default="contracts")
    sc.set_defaults(func=_cmd_schemas)

    for ep in entry_points(group="mediation.commands"):
        try:
            ep.load()(sub)
        except ImportError:
            continue
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
