"""``mediation alerts-defaults`` (the default rules and directory) and
``mediation alerts-verify`` (check a received webhook with the shipped verifier)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _defaults(args: argparse.Namespace) -> int:
    from .directory import DEFAULTS_FILE

    print(DEFAULTS_FILE.read_text(encoding="utf-8"))
    return 0


def _check(args: argparse.Namespace) -> int:
    from .directory import ConfigError, load_structures_file

    try:
        out = load_structures_file(args.file)
    except (ConfigError, ValueError, OSError) as err:
        print(f"invalid: {err}", file=sys.stderr)
        return 1
    print(json.dumps({s: {"authorities": len(a), "rules": len(r)} for s, (a, r) in out.items()}))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .verifier import verify_webhook

    headers = json.loads(Path(args.headers).read_text())
    body = Path(args.body).read_bytes()
    res = verify_webhook(secret=args.secret, headers=headers, body=body,
                         tolerance=args.tolerance)
    print(json.dumps({"ok": res.ok, "reason": res.reason,
                      "idempotency_key": res.idempotency_key}))
    return 0 if res.ok else 1


def register(sub) -> None:
    p = sub.add_parser("alerts-defaults", help="print the default alert rules and authorities")
    p.set_defaults(func=_defaults)
    c = sub.add_parser("alerts-config-check",
                       help="validate a per-structure alerts configuration file")
    c.add_argument("file")
    c.set_defaults(func=_check)
    v = sub.add_parser("alerts-verify", help="verify a received alert webhook (authorities)")
    v.add_argument("--secret", required=True)
    v.add_argument("--headers", required=True, help="JSON file of the request headers")
    v.add_argument("--body", required=True, help="file with the raw request body")
    v.add_argument("--tolerance", type=int, default=300)
    v.set_defaults(func=_verify)
