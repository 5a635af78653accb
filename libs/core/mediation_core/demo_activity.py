"""Simulated mediator activity for ``make run``, through the cases HTTP API (as a mediator's
tool would), and the local authority receiver that alerts' webhooks reach.

Per opened case of the CPTS: a first contact, a T0 autonomy self-assessment, an interview,
one to three actions along the HAS axes, sometimes a dysfunction report (which alerts
dispatches), and for some cases a T1 assessment and a closure. Plus collective actions by
the coordinator. Everything synthetic; descriptions never name a person.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from . import stack
from .auth import issue_token

STRUCTURE = "cpts-ecm"
MEDIATORS = [("cpts-ecm-med-01", "saint-jean-du-gard-lasalle"),
             ("cpts-ecm-med-02", "saint-hippolyte-quissac-sauve")]
COORDINATOR = "cpts-ecm-coord-01"
RECEIVER_SECRET = "demo-authority-secret"  # the demo authorities' shared webhook secret


class AuthorityReceiver:
    """A local HTTP endpoint standing for the authorities' systems: verifies each webhook
    with the verifier shipped to authorities and records what arrived (no content)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.seen: set[str] = set()
        self.delivered = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                from mediation_alerts.verifier import verify_webhook

                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                v = verify_webhook(secret=RECEIVER_SECRET, headers=dict(self.headers.items()),
                                   body=body, seen=receiver.seen)
                if v.ok and v.idempotency_key:
                    first = not v.duplicate
                    receiver.seen.add(v.idempotency_key)
                    if first:
                        receiver.delivered += 1
                        category = json.loads(body).get("category")
                        with open(receiver.log_path, "a") as f:
                            f.write(json.dumps({"at": datetime.now(UTC).isoformat(),
                                                "path": self.path, "alert": v.idempotency_key,
                                                "category": category}) + "\n")
                        print(f"authority receiver: alert {v.idempotency_key} ({category}) "
                              f"delivered to {self.path}", flush=True)
                    self.send_response(200)
                else:
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, authority: str) -> str:
        return f"http://127.0.0.1:{self.port}/{authority}"


def alerts_config(receiver: AuthorityReceiver) -> Path:
    """The demo directory, with the CPTS's ARS desks and Défenseur des droits on webhooks to
    the local receiver (the others stay on the Kafka channel)."""
    src = stack.ROOT / "services/alerts/mediation_alerts/data/demo-structures.json"
    cfg = json.loads(src.read_text())
    auths = cfg["structures"][STRUCTURE]["authorities"]
    for a in ("defenseur_droits", "ars", "ars_alerte", "cpam"):
        auths[a] = {**auths[a], "channels": ["webhook"], "webhook_url": receiver.url(a),
                    "webhook_secret": RECEIVER_SECRET}
    out = stack.STACK_DIR / "demo-alerts.json"
    out.write_text(json.dumps(cfg, ensure_ascii=False, indent=1))
    return out


async def _post(http: httpx.AsyncClient, path: str, body: dict, version: int) -> int:
    r = await http.post(path, json={**body, "version": version})
    if r.status_code >= 400:
        return version
    return r.json()["case"]["version"]


async def work_case(http: httpx.AsyncClient, case: dict, rnd: random.Random) -> None:
    cid, v = case["case_id"], case["version"]
    now = datetime.now(UTC).isoformat()
    v = await _post(http, f"/cases/{cid}/contacts", {"channel": rnd.choice(["phone", "permanence", "home_visit"]),
                                                      "outcome": "reached"}, v)
    v = await _post(http, f"/cases/{cid}/autonomy", {"phase": "T0", "score": rnd.randint(1, 5)}, v)
    v = await _post(http, f"/cases/{cid}/interviews", {"channel": "permanence",
                                                        "duration_minutes": rnd.choice([30, 45, 60])}, v)
    actions: list[dict] = [
        {"kind": "information", "topic": rnd.choice(["rights", "care_system", "prevention"]),
         "outcome": "understood"},
        {"kind": "rights_procedure", "right": rnd.choice(["css", "puma", "ame"]), "body": "cpam",
         "status": rnd.choice(["filed", "opened", "opened", "refused"])},
        {"kind": "orientation", "target": rnd.choice(["gp", "dentist", "mental_health", "pass"]),
         "outcome": rnd.choice(["accepted", "completed"]), "lasting_care": rnd.random() < 0.6},
        {"kind": "appointment", "target": rnd.choice(["gp", "specialist"]), "outcome": "booked"},
        {"kind": "accompaniment", "target": rnd.choice(["hospital", "cpam"]), "outcome": "done"},
    ]
    for action in rnd.sample(actions, rnd.randint(1, 3)):
        v = await _post(http, f"/cases/{cid}/actions", action, v)
    if rnd.random() < 0.12:
        category, concerned, text = rnd.choice([
            ("care_refusal", "un cabinet dentaire du secteur",
             "Refus de rendez-vous opposé à une bénéficiaire de la CSS."),
            ("insalubrious_housing", "un bailleur privé",
             "Logement humide avec moisissures et installation électrique dangereuse."),
            ("rights_blockage", "la caisse d'assurance maladie",
             "Dossier de complémentaire santé solidaire bloqué depuis plus de trois mois."),
            ("health_risk", "un hébergement collectif",
             "Plusieurs personnes hébergées présentent une toux persistante."),
        ])
        v = await _post(http, f"/cases/{cid}/dysfunctions", {
            "category": category, "concerned": concerned, "description": text,
            "urgency": rnd.choice(["normal", "priority", "urgent"]), "observed_on": now}, v)
    if rnd.random() < 0.4:
        v = await _post(http, f"/cases/{cid}/autonomy", {"phase": "T1", "score": rnd.randint(5, 9)}, v)
        await _post(http, f"/cases/{cid}/close", {"reason": rnd.choice(
            ["autonomous", "barriers_lifted", "relay_in_place", "need_met_no_wish"])}, v)


async def simulate(env: dict[str, str], seed: int = 2026, wait_s: float = 60.0) -> None:
    rnd = random.Random(seed)
    base = f"http://127.0.0.1:{env.get('MEDIATION_CASES_PORT', '8083')}"
    worked = 0
    for mediator, area in MEDIATORS:
        token = issue_token(sub=mediator, role="mediator", structure=STRUCTURE, area=area)
        async with httpx.AsyncClient(base_url=base, timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            cases: list = []
            deadline = asyncio.get_running_loop().time() + wait_s
            while not cases and asyncio.get_running_loop().time() < deadline:
                r = await http.get("/cases", params={"status": "open"})
                cases = r.json() if r.status_code == 200 else []
                if not cases:
                    await asyncio.sleep(1)
            for case in cases:
                if case.get("first_contact_at") is None:
                    await work_case(http, case, rnd)
                    worked += 1
    token = issue_token(sub=COORDINATOR, role="coordinator", structure=STRUCTURE)
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        now = datetime.now(UTC).isoformat()
        for kind, theme, area in [
            ("workshop", "Atelier : ouvrir ses droits à la santé", MEDIATORS[0][1]),
            ("screening_action", "Octobre rose : dépistage du cancer du sein", MEDIATORS[1][1]),
            ("awareness_session", "Sensibilisation des professionnels au refus de soins", MEDIATORS[1][1]),
            ("partner_meeting", "Réunion avec la CPAM et le CCAS", MEDIATORS[0][1]),
            ("professional_tool", "Annuaire des permanences pour les professionnels", MEDIATORS[0][1]),
        ]:
            await http.post("/collective-actions", json={
                "kind": kind, "theme": theme, "held_on": now, "area": area,
                "place": "Salle des fêtes", "partners": ["CPAM du Gard"],
                "attendance": {"participants": rnd.randint(8, 30), "professionals": rnd.randint(1, 6)}})
    print(f"demo: mediators worked {worked} cases (contacts, actions, dysfunctions, closures)",
          flush=True)
