"""The authority directory and the routing rules (plain code; the tables feed it).

Rules: a dysfunction's category (and optionally its urgency and commune) -> one or more
authorities, plus an escalation chain. A structure's own rules (table ``rules``) win over
the defaults shipped in ``data/defaults.json``; among candidates the most specific wins
(communes + urgency > one of them > category only), then the lower ``priority``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mediation_schemas.vocab import DysfunctionCategory, Urgency

from .deadlines import parse_spec

DEFAULTS_FILE = Path(__file__).parent / "data" / "defaults.json"
COORDINATOR = "coordinator"
CHANNELS = ("webhook", "email", "kafka")


@dataclass(frozen=True)
class Authority:
    authority_id: str
    name: str
    channels: tuple[str, ...] = ()
    webhook_url: str | None = None
    webhook_secret: str | None = None
    email: str | None = None
    ack: dict[str, str] = field(default_factory=dict)

    def ack_spec(self, urgency: str) -> str:
        return self.ack.get(urgency) or self.ack.get("normal") or "5d"

    def usable_channels(self) -> list[str]:
        """Channels configured with what they need (kafka needs nothing)."""
        out = []
        for c in self.channels:
            if (c == "webhook" and self.webhook_url and self.webhook_secret) or \
               (c == "email" and self.email) or c == "kafka":
                out.append(c)
        return out


@dataclass(frozen=True)
class Rule:
    rule_id: str
    category: str
    authorities: tuple[str, ...]
    escalation: tuple[str, ...] = ()
    urgencies: tuple[str, ...] = ()
    communes: tuple[str, ...] = ()
    requires_identity: bool = False
    priority: int = 100
    structure_specific: bool = False

    def matches(self, *, category: str, urgency: str, commune: str | None) -> bool:
        if self.category != category:
            return False
        if self.urgencies and urgency not in self.urgencies:
            return False
        if self.communes and (commune is None or _norm(commune) not in
                              {_norm(c) for c in self.communes}):
            return False
        return True

    def specificity(self) -> tuple[int, int, int]:
        return (int(self.structure_specific), int(bool(self.communes)) + int(bool(self.urgencies)),
                -self.priority)


def _norm(s: str) -> str:
    return " ".join(s.lower().replace("-", " ").split())


class ConfigError(ValueError):
    """A rule or directory entry that cannot be used; the message names the field and rule."""


def validate_authority(a: Authority) -> None:
    for c in a.channels:
        if c not in CHANNELS:
            raise ConfigError(f"channels: unknown channel (accepted: {', '.join(CHANNELS)})")
    if "webhook" in a.channels and a.webhook_url and not a.webhook_url.startswith(("https://", "http://")):
        raise ConfigError("webhook_url: must be an http(s) URL")
    for k, v in a.ack.items():
        if k not in {u.value for u in Urgency}:
            raise ConfigError("ack: keys must be urgencies (normal, priority, urgent)")
        try:
            parse_spec(v)
        except ValueError as err:
            raise ConfigError(f"ack.{k}: {err}") from None


def validate_rule(r: Rule) -> None:
    if r.category not in {c.value for c in DysfunctionCategory}:
        raise ConfigError("category: unknown dysfunction category (accepted: "
                          + ", ".join(c.value for c in DysfunctionCategory) + ")")
    if not r.authorities:
        raise ConfigError("authorities: at least one authority id is required")
    for u in r.urgencies:
        if u not in {x.value for x in Urgency}:
            raise ConfigError("urgencies: accepted values are normal, priority, urgent")


@lru_cache(maxsize=1)
def _defaults_raw() -> dict[str, Any]:
    return json.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))


def default_authorities() -> dict[str, Authority]:
    return {k: Authority(authority_id=k, name=v["name"], ack=dict(v.get("ack", {})))
            for k, v in _defaults_raw()["authorities"].items()}


def default_rules() -> list[Rule]:
    return [Rule(rule_id=r["rule_id"], category=r["category"],
                 authorities=tuple(r["authorities"]), escalation=tuple(r.get("escalation", ())),
                 urgencies=tuple(r.get("urgencies", ())), communes=tuple(r.get("communes", ())),
                 requires_identity=bool(r.get("requires_identity", False)),
                 priority=int(r.get("priority", 100)))
            for r in _defaults_raw()["rules"]]


def resolve(rules: list[Rule], *, category: str, urgency: str, commune: str | None) -> Rule:
    """The rule for a dysfunction; falls back to the coordinator when nothing matches."""
    candidates = [r for r in rules if r.matches(category=category, urgency=urgency,
                                                 commune=commune)]
    if not candidates:
        return Rule(rule_id="fallback-coordinator", category=category,
                    authorities=(COORDINATOR,))
    return max(candidates, key=lambda r: r.specificity())


def merge_directory(defaults: dict[str, Authority],
                    own: dict[str, Authority]) -> dict[str, Authority]:
    return {**defaults, **own}


def escalation_sequence(rule: Rule, authority_id: str) -> list[str]:
    """Who is told, in order, when ``authority_id`` does not acknowledge: the coordinator,
    then the next authorities of the rule's escalation chain."""
    seq = [] if authority_id == COORDINATOR else [COORDINATOR]
    seq += [a for a in rule.escalation if a != authority_id and a not in rule.authorities]
    return seq


def load_structures_file(path: str | Path) -> dict[str, tuple[list[Authority], list[Rule]]]:
    """A per-structure configuration file (see ``data/demo-structures.json``): for each
    structure, authorities (fields of :class:`Authority`; a default authority's name and
    deadlines are kept unless given) and rules. Raises ConfigError naming the entry."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    defaults = default_authorities()
    out: dict[str, tuple[list[Authority], list[Rule]]] = {}
    for structure, spec in (raw.get("structures") or {}).items():
        auths: list[Authority] = []
        for aid, a in (spec.get("authorities") or {}).items():
            base = defaults.get(aid)
            name = a.get("name") or (base.name if base else None)
            if not name:
                raise ConfigError(f"structures.{structure}.authorities.{aid}.name: required "
                                  "for an authority that is not a default one")
            auth = Authority(authority_id=aid, name=name, channels=tuple(a.get("channels", ())),
                             webhook_url=a.get("webhook_url"),
                             webhook_secret=a.get("webhook_secret"), email=a.get("email"),
                             ack={**(base.ack if base else {}), **a.get("ack", {})})
            try:
                validate_authority(auth)
            except ConfigError as err:
                raise ConfigError(f"structures.{structure}.authorities.{aid}.{err}") from None
            auths.append(auth)
        rules: list[Rule] = []
        for i, r in enumerate(spec.get("rules") or []):
            try:
                rule = Rule(rule_id=r["rule_id"], category=r["category"],
                            authorities=tuple(r["authorities"]),
                            escalation=tuple(r.get("escalation", ())),
                            urgencies=tuple(r.get("urgencies", ())),
                            communes=tuple(r.get("communes", ())),
                            requires_identity=bool(r.get("requires_identity", False)),
                            priority=int(r.get("priority", 100)), structure_specific=True)
            except KeyError as err:
                raise ConfigError(f"structures.{structure}.rules[{i}].{err.args[0]}: "
                                  "required") from None
            try:
                validate_rule(rule)
            except ConfigError as err:
                raise ConfigError(f"structures.{structure}.rules[{i}].{err}") from None
            rules.append(rule)
        out[structure] = (auths, rules)
    return out
