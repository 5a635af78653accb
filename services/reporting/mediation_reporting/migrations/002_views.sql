-- Indicator views, derived on the fly from the incrementally maintained tables of 001.
-- Raw views are named v_*; the coordinator role reads them. French labels of every view
-- and column are set by the service at start (COMMENT ON, from mediation_reporting.catalog)
-- and documented in services/reporting/VIEWS.md.
--
-- Periods are calendar periods in Europe/Paris: mois (YYYY-MM), trimestre (YYYY-Tn),
-- annee (YYYY). Geography levels: structure, secteur (sub-territory), mediateur; a row of
-- level "structure" has secteur and mediateur NULL, a row of level "secteur" has mediateur NULL.

CREATE TABLE IF NOT EXISTS libelles (
    domaine text NOT NULL,
    code    text NOT NULL,
    libelle text NOT NULL,
    PRIMARY KEY (domaine, code)
);

-- Calendar: each month (first day, Europe/Paris) belongs to three periods. Views join it
-- on the local month of a fact, so a filter on type_periode/periode reaches the scan.
CREATE TABLE IF NOT EXISTS calendrier (
    mois         date NOT NULL,
    type_periode text NOT NULL,
    periode      text NOT NULL,
    PRIMARY KEY (type_periode, periode, mois)
);
CREATE INDEX IF NOT EXISTS calendrier_mois ON calendrier (mois);
INSERT INTO calendrier (mois, type_periode, periode)
SELECT m::date, v.t, to_char(m, v.f)
FROM generate_series(date '2000-01-01', date '2100-12-01', interval '1 month') AS m,
     (VALUES ('mois', 'YYYY-MM'), ('trimestre', 'YYYY-"T"Q'), ('annee', 'YYYY')) AS v(t, f)
ON CONFLICT DO NOTHING;

-- Each period with its bounds (UTC instants of local midnights), for "active during".
CREATE TABLE IF NOT EXISTS periodes (
    type_periode text NOT NULL,
    periode      text NOT NULL,
    debut        timestamptz NOT NULL,
    fin          timestamptz NOT NULL,
    PRIMARY KEY (type_periode, periode)
);
CREATE INDEX IF NOT EXISTS periodes_debut ON periodes (debut);
INSERT INTO periodes (type_periode, periode, debut, fin)
SELECT type_periode, periode,
       min(mois)::timestamp AT TIME ZONE 'Europe/Paris',
       (max(mois) + interval '1 month')::timestamp AT TIME ZONE 'Europe/Paris'
FROM calendrier GROUP BY type_periode, periode
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------- facts (helper views)

CREATE OR REPLACE VIEW f_dossiers AS
SELECT c.case_id,
       coalesce(c.structure, '(non attribuée)') AS structure,
       coalesce(c.area, '(non précisé)') AS secteur,
       coalesce(c.mediator_id, '(non précisé)') AS mediateur,
       coalesce(c.person_ref, c.case_id::text) AS personne,
       c.origin, c.urgency,
       coalesce(c.referral_received_at, c.opened_at) AS debut,
       c.referral_received_at, c.opened_at, c.first_contact_at,
       CASE WHEN c.closed_at IS NOT NULL AND (c.reopened_at IS NULL OR c.reopened_at < c.closed_at)
            THEN c.closed_at END AS cloture_at,
       (c.closed_at IS NULL OR (c.reopened_at IS NOT NULL AND c.reopened_at >= c.closed_at)) AS ouvert,
       EXISTS (SELECT 1 FROM case_notices n
               WHERE n.case_id = c.case_id AND n.kind = 'FirstContactOverdue') AS premier_contact_hors_delai
FROM cases c
WHERE c.opened_at IS NOT NULL;

CREATE OR REPLACE VIEW f_activite AS
SELECT d.structure, d.secteur, d.mediateur, d.opened_at AS at, 'ouverture'::text AS kind,
       d.personne, d.origin IN ('outreach', 'permanence') AS rencontre,
       0 AS participants, 0 AS professionnels, NULL::text AS outcome
FROM f_dossiers d
UNION ALL
SELECT d.structure, d.secteur, d.mediateur, d.first_contact_at, 'premier_contact', d.personne, true, 0, 0, NULL
FROM f_dossiers d WHERE d.first_contact_at IS NOT NULL
UNION ALL
SELECT coalesce(a.structure, '(non attribuée)'), coalesce(a.area, '(non précisé)'),
       coalesce(a.mediator_id, '(non précisé)'), a.occurred_at, a.kind,
       coalesce(c.person_ref, a.case_id::text), a.kind <> 'contact_attempt', 0, 0, a.outcome
FROM case_actions a LEFT JOIN cases c ON c.case_id = a.case_id
UNION ALL
SELECT coalesce(x.structure, '(non attribuée)'), coalesce(x.area, '(non précisé)'),
       coalesce(x.recorded_by, '(non précisé)'), x.held_on, 'collectif:' || x.kind, NULL, false,
       x.participants, x.professionals, NULL
FROM collective_actions x;

CREATE OR REPLACE VIEW f_orientations AS
SELECT r.referral_key,
       coalesce(r.structure, r.env_structure, '(non attribuée)') AS structure,
       coalesce(r.area, '(non routée)') AS secteur,
       coalesce(r.mediator_id, '(non routée)') AS mediateur,
       coalesce(r.referrer_kind, '(non précisé)') AS source,
       coalesce(r.source_system, '(non précisé)') AS systeme_source,
       r.received_at,
       -- a form accepted once stays accepted (a later invalid correction is refused alone);
       -- a form refused then corrected and accepted counts as accepted
       CASE WHEN r.accepted_at IS NOT NULL OR r.routing_status IS NOT NULL
            THEN 'acceptee' ELSE 'refusee' END AS decision,
       r.routing_status, r.motives
FROM referrals r
WHERE r.received_at IS NOT NULL
  AND (r.accepted_at IS NOT NULL OR r.rejected_at IS NOT NULL OR r.routing_status IS NOT NULL);

-- ---------------------------------------------------------------- process indicators
-- Each view joins the calendar (one row per period a fact's month belongs to) and a
-- lateral list of geography levels, then groups plainly: a filter on a period, a level
-- or a structure is pushed below the aggregation by the planner.

CREATE OR REPLACE VIEW v_activite AS
SELECT p.type_periode, p.periode, g.niveau, f.structure, g.secteur, g.mediateur,
       count(DISTINCT f.personne) FILTER (WHERE f.rencontre) AS personnes_rencontrees,
       count(*) FILTER (WHERE f.kind = 'ouverture') AS dossiers_ouverts,
       count(*) FILTER (WHERE f.kind = 'premier_contact') AS premiers_contacts,
       count(*) FILTER (WHERE f.kind = 'contact_attempt') AS tentatives_contact,
       count(*) FILTER (WHERE f.kind = 'interview') AS entretiens,
       count(*) FILTER (WHERE f.kind = 'information') AS informations,
       count(*) FILTER (WHERE f.kind = 'orientation') AS orientations,
       count(*) FILTER (WHERE f.kind = 'appointment') AS rendez_vous,
       count(*) FILTER (WHERE f.kind = 'accompaniment'
                          AND coalesce(f.outcome, 'done') NOT IN ('cancelled', 'person_absent')) AS accompagnements_physiques,
       count(*) FILTER (WHERE f.kind = 'rights_procedure') AS demarches_droits,
       count(*) FILTER (WHERE f.kind = 'interpreting') AS interpretariats,
       count(*) FILTER (WHERE f.kind = 'collectif:awareness_session') AS seances_information,
       count(*) FILTER (WHERE f.kind LIKE 'collectif:%' AND f.kind NOT IN ('collectif:partner_meeting', 'collectif:professional_tool')) AS actions_collectives,
       coalesce(sum(f.participants) FILTER (WHERE f.kind LIKE 'collectif:%' AND f.kind NOT IN ('collectif:partner_meeting', 'collectif:professional_tool')), 0)::bigint AS participants_actions_collectives,
       count(*) FILTER (WHERE f.kind = 'collectif:professional_tool') AS outils_professionnels,
       count(*) FILTER (WHERE f.kind = 'collectif:partner_meeting') AS reunions_partenaires
FROM f_activite f
JOIN calendrier p ON p.mois = date_trunc('month', f.at AT TIME ZONE 'Europe/Paris')::date
CROSS JOIN LATERAL (VALUES ('structure', NULL::text, NULL::text), ('secteur', f.secteur, NULL),
                                  ('mediateur', f.secteur, f.mediateur)) AS g(niveau, secteur, mediateur)
GROUP BY p.type_periode, p.periode, g.niveau, f.structure, g.secteur, g.mediateur;

-- every kind of action, including kinds this view set does not name
CREATE OR REPLACE VIEW v_actions_par_type AS
SELECT p.type_periode, p.periode, f.structure, f.kind AS type_action,
       count(*) AS actions,
       coalesce(sum(f.participants), 0)::bigint AS participants,
       coalesce(sum(f.professionnels), 0)::bigint AS professionnels
FROM f_activite f
JOIN calendrier p ON p.mois = date_trunc('month', f.at AT TIME ZONE 'Europe/Paris')::date
GROUP BY p.type_periode, p.periode, f.structure, f.kind;

CREATE OR REPLACE VIEW v_orientations AS
SELECT p.type_periode, p.periode, g.niveau, f.structure, g.secteur, g.mediateur,
       k.source,
       count(*) AS recues,
       count(*) FILTER (WHERE f.decision = 'acceptee') AS acceptees,
       count(*) FILTER (WHERE f.decision = 'refusee') AS refusees,
       count(*) FILTER (WHERE f.decision = 'acceptee' AND f.routing_status = 'routed') AS routees,
       count(*) FILTER (WHERE f.decision = 'acceptee' AND f.routing_status = 'unroutable') AS non_routables
FROM f_orientations f
JOIN calendrier p ON p.mois = date_trunc('month', f.received_at AT TIME ZONE 'Europe/Paris')::date
CROSS JOIN LATERAL (VALUES ('structure', NULL::text, NULL::text), ('secteur', f.secteur, NULL),
                                  ('mediateur', f.secteur, f.mediateur)) AS g(niveau, secteur, mediateur)
CROSS JOIN LATERAL (VALUES (f.source), ('(toutes sources)')) AS k(source)
GROUP BY p.type_periode, p.periode, g.niveau, f.structure, g.secteur, g.mediateur, k.source;

CREATE OR REPLACE VIEW v_orientations_par_systeme AS
SELECT p.type_periode, p.periode, f.systeme_source,
       count(*) AS recues,
       count(*) FILTER (WHERE f.decision = 'acceptee') AS acceptees,
       count(*) FILTER (WHERE f.decision = 'refusee') AS refusees
FROM f_orientations f
JOIN calendrier p ON p.mois = date_trunc('month', f.received_at AT TIME ZONE 'Europe/Paris')::date
GROUP BY p.type_periode, p.periode, f.systeme_source;

-- ---------------------------------------------------------------- motives

CREATE OR REPLACE VIEW v_motifs AS
SELECT p.type_periode, p.periode, g.niveau, m.structure, g.secteur, g.mediateur,
       k.motif,
       CASE WHEN k.motif = '(tous motifs)' THEN 'Tous motifs' ELSE coalesce(max(l.libelle), k.motif) END AS motif_libelle,
       count(*) AS mentions,
       count(DISTINCT m.referral_key) AS orientations,
       round(100.0 * count(*) / nullif(max(CASE WHEN k.motif = '(tous motifs)' THEN count(*) END) OVER w, 0), 1) AS part_mentions_pct,
       round(100.0 * count(DISTINCT m.referral_key)
             / nullif(max(CASE WHEN k.motif = '(tous motifs)' THEN count(DISTINCT m.referral_key) END) OVER w, 0), 1) AS part_orientations_pct
FROM (SELECT f.referral_key, f.structure, f.secteur, f.mediateur, f.received_at, x.motif
      FROM f_orientations f CROSS JOIN LATERAL unnest(f.motives) AS x(motif)
      WHERE f.decision = 'acceptee') m
JOIN calendrier p ON p.mois = date_trunc('month', m.received_at AT TIME ZONE 'Europe/Paris')::date
CROSS JOIN LATERAL (VALUES ('structure', NULL::text, NULL::text), ('secteur', m.secteur, NULL),
                                  ('mediateur', m.secteur, m.mediateur)) AS g(niveau, secteur, mediateur)
CROSS JOIN LATERAL (VALUES (m.motif), ('(tous motifs)')) AS k(motif)
LEFT JOIN libelles l ON l.domaine = 'motif' AND l.code = k.motif
GROUP BY p.type_periode, p.periode, g.niveau, m.structure, g.secteur, g.mediateur, k.motif
WINDOW w AS (PARTITION BY p.type_periode, p.periode, g.niveau, m.structure, g.secteur, g.mediateur);

-- ---------------------------------------------------------------- result indicators

CREATE OR REPLACE VIEW f_resultats AS
SELECT coalesce(a.structure, '(non attribuée)') AS structure, coalesce(a.area, '(non précisé)') AS secteur,
       coalesce(a.mediator_id, '(non précisé)') AS mediateur, a.occurred_at AS at,
       CASE a.status WHEN 'opened' THEN 'droit_ouvert' ELSE 'droit_depose' END AS kind,
       coalesce(c.person_ref, a.case_id::text) AS personne, NULL::int AS v0, NULL::int AS v1
FROM case_actions a LEFT JOIN cases c ON c.case_id = a.case_id
WHERE a.kind = 'rights_procedure' AND a.status IN ('opened', 'filed')
UNION ALL
SELECT coalesce(a.structure, '(non attribuée)'), coalesce(a.area, '(non précisé)'),
       coalesce(a.mediator_id, '(non précisé)'), a.occurred_at, 'orientation_evaluee',
       coalesce(c.person_ref, a.case_id::text), NULL, a.lasting_care::int
FROM case_actions a LEFT JOIN cases c ON c.case_id = a.case_id
WHERE a.kind = 'orientation' AND a.lasting_care IS NOT NULL
UNION ALL
SELECT coalesce(t1.structure, '(non attribuée)'), coalesce(t1.area, '(non précisé)'),
       coalesce(t1.mediator_id, '(non précisé)'), t1.occurred_at, 'autonomie',
       coalesce(c.person_ref, t1.case_id::text), t0.autonomy_score, t1.autonomy_score
FROM (SELECT DISTINCT ON (case_id) * FROM case_actions
      WHERE kind = 'autonomy_assessment' AND autonomy_phase = 'T1' AND autonomy_score IS NOT NULL
      ORDER BY case_id, occurred_at DESC, action_id DESC) t1
JOIN (SELECT DISTINCT ON (case_id) * FROM case_actions
      WHERE kind = 'autonomy_assessment' AND autonomy_phase = 'T0' AND autonomy_score IS NOT NULL
      ORDER BY case_id, occurred_at, action_id) t0 ON t0.case_id = t1.case_id
LEFT JOIN cases c ON c.case_id = t1.case_id;

CREATE OR REPLACE VIEW v_resultats AS
SELECT p.type_periode, p.periode, g.niveau, f.structure, g.secteur, g.mediateur,
       count(*) FILTER (WHERE f.kind = 'droit_depose') AS demarches_droits_deposees,
       count(*) FILTER (WHERE f.kind = 'droit_ouvert') AS droits_ouverts,
       count(DISTINCT f.personne) FILTER (WHERE f.kind = 'droit_ouvert') AS personnes_droits_ouverts,
       count(*) FILTER (WHERE f.kind = 'orientation_evaluee') AS orientations_evaluees,
       count(*) FILTER (WHERE f.kind = 'orientation_evaluee' AND f.v1 = 1) AS orientations_soins_durables,
       round(100.0 * count(*) FILTER (WHERE f.kind = 'orientation_evaluee' AND f.v1 = 1)
             / nullif(count(*) FILTER (WHERE f.kind = 'orientation_evaluee'), 0), 1) AS part_soins_durables_pct,
       count(*) FILTER (WHERE f.kind = 'autonomie') AS personnes_evaluees_t0_t1,
       count(*) FILTER (WHERE f.kind = 'autonomie' AND f.v1 > f.v0) AS personnes_autonomie_en_progres,
       round(avg(f.v0) FILTER (WHERE f.kind = 'autonomie'), 1) AS score_autonomie_t0_moyen,
       round(avg(f.v1) FILTER (WHERE f.kind = 'autonomie'), 1) AS score_autonomie_t1_moyen
FROM f_resultats f
JOIN calendrier p ON p.mois = date_trunc('month', f.at AT TIME ZONE 'Europe/Paris')::date
CROSS JOIN LATERAL (VALUES ('structure', NULL::text, NULL::text), ('secteur', f.secteur, NULL),
                                  ('mediateur', f.secteur, f.mediateur)) AS g(niveau, secteur, mediateur)
GROUP BY p.type_periode, p.periode, g.niveau, f.structure, g.secteur, g.mediateur;

-- ---------------------------------------------------------------- caseload, delays, closures

CREATE OR REPLACE VIEW v_file_active AS
SELECT g.niveau, d.structure, g.secteur, g.mediateur,
       count(*) AS dossiers_actifs,
       count(DISTINCT d.personne) AS personnes_suivies,
       count(*) FILTER (WHERE d.first_contact_at IS NULL) AS sans_premier_contact,
       count(*) FILTER (WHERE d.urgency IN ('urgent', 'priority')) AS urgents_ou_prioritaires,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM now() - d.opened_at) / 86400))::numeric, 1) AS anciennete_mediane_jours,
       now() AS calculee_le
FROM f_dossiers d
CROSS JOIN LATERAL (VALUES ('structure', NULL::text, NULL::text), ('secteur', d.secteur, NULL),
                                  ('mediateur', d.secteur, d.mediateur)) AS g(niveau, secteur, mediateur)
WHERE d.ouvert
GROUP BY g.niveau, d.structure, g.secteur, g.mediateur;

CREATE OR REPLACE VIEW v_file_active_periode AS
SELECT p.type_periode, p.periode, g.niveau, d.structure, g.secteur, g.mediateur,
       count(*) AS dossiers_actifs,  -- a case meets a period (and a level) once
       count(DISTINCT d.personne) AS personnes_file_active
FROM periodes p
JOIN f_dossiers d ON d.opened_at < p.fin AND (d.cloture_at IS NULL OR d.cloture_at >= p.debut)
CROSS JOIN LATERAL (VALUES ('structure', NULL::text, NULL::text), ('secteur', d.secteur, NULL),
                                  ('mediateur', d.secteur, d.mediateur)) AS g(niveau, secteur, mediateur)
WHERE p.debut <= now() AND p.fin > (SELECT min(c.opened_at) FROM cases c)
GROUP BY p.type_periode, p.periode, g.niveau, d.structure, g.secteur, g.mediateur;

CREATE OR REPLACE VIEW v_delais AS
SELECT p.type_periode, p.periode, g.niveau, d.structure, g.secteur, g.mediateur,
       count(*) AS dossiers,
       count(d.first_contact_at) AS avec_premier_contact,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.first_contact_at - d.debut) / 86400))::numeric, 1) AS jours_orientation_premier_contact_median,
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM d.first_contact_at - d.debut) / 86400))::numeric, 1) AS jours_orientation_premier_contact_p90,
       count(*) FILTER (WHERE d.premier_contact_hors_delai) AS premiers_contacts_hors_delai,
       count(d.cloture_at) AS clotures,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.cloture_at - d.first_contact_at) / 86400))::numeric, 1) AS jours_premier_contact_cloture_median,
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM d.cloture_at - d.first_contact_at) / 86400))::numeric, 1) AS jours_premier_contact_cloture_p90,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.cloture_at - d.debut) / 86400))::numeric, 1) AS jours_orientation_cloture_median,
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM d.cloture_at - d.debut) / 86400))::numeric, 1) AS jours_orientation_cloture_p90
FROM f_dossiers d
JOIN calendrier p ON p.mois = date_trunc('month', d.debut AT TIME ZONE 'Europe/Paris')::date
CROSS JOIN LATERAL (VALUES ('structure', NULL::text, NULL::text), ('secteur', d.secteur, NULL),
                                  ('mediateur', d.secteur, d.mediateur)) AS g(niveau, secteur, mediateur)
GROUP BY p.type_periode, p.periode, g.niveau, d.structure, g.secteur, g.mediateur;

CREATE OR REPLACE VIEW v_motifs_cloture AS
SELECT p.type_periode, p.periode, g.niveau, x.structure, g.secteur, g.mediateur,
       k.motif_cloture,
       CASE WHEN k.motif_cloture = '(tous motifs)' THEN 'Tous motifs'
            ELSE coalesce(max(l.libelle), k.motif_cloture) END AS motif_cloture_libelle,
       count(*) AS clotures
FROM (SELECT cc.case_id, cc.closed_at, cc.reason,
             coalesce(cc.structure, '(non attribuée)') AS structure,
             coalesce(cc.area, '(non précisé)') AS secteur,
             coalesce(cc.mediator_id, '(non précisé)') AS mediateur
      FROM case_closures cc) x
JOIN calendrier p ON p.mois = date_trunc('month', x.closed_at AT TIME ZONE 'Europe/Paris')::date
CROSS JOIN LATERAL (VALUES ('structure', NULL::text, NULL::text), ('secteur', x.secteur, NULL),
                                  ('mediateur', x.secteur, x.mediateur)) AS g(niveau, secteur, mediateur)
CROSS JOIN LATERAL (VALUES (x.reason), ('(tous motifs)')) AS k(motif_cloture)
LEFT JOIN libelles l ON l.domaine = 'motif_cloture' AND l.code = k.motif_cloture
GROUP BY p.type_periode, p.periode, g.niveau, x.structure, g.secteur, g.mediateur, k.motif_cloture;

-- ---------------------------------------------------------------- dysfunctions

CREATE OR REPLACE VIEW f_alertes AS
SELECT d.dysfunction_id,
       coalesce(d.structure, '(non attribuée)') AS structure,
       coalesce(d.area, '(non précisé)') AS secteur,
       d.category, d.urgency, d.reported_at,
       coalesce(a.authority_id, '(aucune)') AS autorite, a.alert_id,
       CASE WHEN a.alert_id IS NULL THEN 'non_transmis'
            WHEN a.acknowledged_at IS NOT NULL THEN 'acquitte'
            WHEN a.escalation_level > 0 THEN 'escalade'
            WHEN a.failed_at IS NOT NULL
                 AND (a.last_dispatched_at IS NULL OR a.failed_at >= a.last_dispatched_at) THEN 'echec_envoi'
            WHEN a.first_dispatched_at IS NOT NULL THEN 'transmis'
            ELSE 'en_cours' END AS statut,
       extract(epoch FROM a.first_dispatched_at - d.reported_at) / 3600 AS heures_transmission,
       extract(epoch FROM a.acknowledged_at - d.reported_at) / 3600 AS heures_acquittement
FROM dysfunctions d LEFT JOIN alerts a ON a.dysfunction_id = d.dysfunction_id;

CREATE OR REPLACE VIEW v_dysfonctionnements AS
SELECT p.type_periode, p.periode, f.structure, f.category AS categorie,
       coalesce(max(l.libelle), f.category) AS categorie_libelle,
       f.autorite, f.statut,
       count(DISTINCT f.dysfunction_id) AS signalements,
       count(f.alert_id) AS alertes,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY f.heures_transmission))::numeric, 1) AS heures_transmission_mediane,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY f.heures_acquittement))::numeric, 1) AS heures_reponse_mediane,
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY f.heures_acquittement))::numeric, 1) AS heures_reponse_p90
FROM f_alertes f
JOIN calendrier p ON p.mois = date_trunc('month', f.reported_at AT TIME ZONE 'Europe/Paris')::date
LEFT JOIN libelles l ON l.domaine = 'categorie_dysfonctionnement' AND l.code = f.category
GROUP BY p.type_periode, p.periode, f.structure, f.category, f.autorite, f.statut;

CREATE OR REPLACE VIEW v_dysfonctionnements_categorie AS
SELECT p.type_periode, p.periode, g.niveau, d.structure, g.secteur,
       k.categorie,
       CASE WHEN k.categorie = '(toutes catégories)' THEN 'Toutes catégories'
            ELSE coalesce(max(l.libelle), k.categorie) END AS categorie_libelle,
       count(*) AS signalements,
       count(*) FILTER (WHERE d.urgency = 'urgent') AS urgents,
       count(*) FILTER (WHERE d.transmis) AS transmis,
       count(*) FILTER (WHERE d.acquitte) AS avec_reponse,
       count(*) FILTER (WHERE d.escalade AND NOT d.acquitte) AS escalades_sans_reponse,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d.heures_reponse))::numeric, 1) AS heures_reponse_mediane,
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY d.heures_reponse))::numeric, 1) AS heures_reponse_p90
FROM (SELECT f.dysfunction_id, f.structure, f.secteur, f.category, f.urgency, f.reported_at,
             bool_or(f.alert_id IS NOT NULL AND f.statut <> 'en_cours') AS transmis,
             bool_or(f.statut = 'acquitte') AS acquitte,
             bool_or(f.statut = 'escalade') AS escalade,
             min(f.heures_acquittement) AS heures_reponse
      FROM f_alertes f
      GROUP BY f.dysfunction_id, f.structure, f.secteur, f.category, f.urgency, f.reported_at) d
JOIN calendrier p ON p.mois = date_trunc('month', d.reported_at AT TIME ZONE 'Europe/Paris')::date
CROSS JOIN LATERAL (VALUES ('structure', NULL::text), ('secteur', d.secteur)) AS g(niveau, secteur)
CROSS JOIN LATERAL (VALUES (d.category), ('(toutes catégories)')) AS k(categorie)
LEFT JOIN libelles l ON l.domaine = 'categorie_dysfonctionnement' AND l.code = k.categorie
GROUP BY p.type_periode, p.periode, g.niveau, d.structure, g.secteur, k.categorie;

-- ---------------------------------------------------------------- freshness

CREATE OR REPLACE VIEW v_fraicheur AS
SELECT f.source, f.newest_event_at AS evenement_le_plus_recent, f.last_applied_at AS derniere_application,
       f.events AS evenements_appliques,
       round(extract(epoch FROM now() - f.newest_event_at)::numeric, 1) AS retard_secondes
FROM freshness f
UNION ALL
SELECT '(toutes sources)', max(f.newest_event_at), max(f.last_applied_at), coalesce(sum(f.events), 0)::bigint,
       round(extract(epoch FROM now() - max(f.newest_event_at))::numeric, 1)
FROM freshness f;
