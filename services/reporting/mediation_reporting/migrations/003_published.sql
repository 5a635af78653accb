-- Published (masked) indicator views: pub_<x> reads pub_<x>_data, the masked copy of
-- its raw view computed by mediation_reporting.publish (statistical secrecy). The public
-- role reads the pub_* views only; no role reads the *_data tables.

CREATE TABLE IF NOT EXISTS pub_activite_data AS
    SELECT *, NULL::text[] AS cellules_masquees, NULL::timestamptz AS publie_le
    FROM v_activite WITH NO DATA;
CREATE OR REPLACE VIEW pub_activite AS SELECT * FROM pub_activite_data;

CREATE TABLE IF NOT EXISTS pub_orientations_data AS
    SELECT *, NULL::text[] AS cellules_masquees, NULL::timestamptz AS publie_le
    FROM v_orientations WITH NO DATA;
CREATE OR REPLACE VIEW pub_orientations AS SELECT * FROM pub_orientations_data;

CREATE TABLE IF NOT EXISTS pub_motifs_data AS
    SELECT *, NULL::text[] AS cellules_masquees, NULL::timestamptz AS publie_le
    FROM v_motifs WITH NO DATA;
CREATE OR REPLACE VIEW pub_motifs AS SELECT * FROM pub_motifs_data;

CREATE TABLE IF NOT EXISTS pub_resultats_data AS
    SELECT *, NULL::text[] AS cellules_masquees, NULL::timestamptz AS publie_le
    FROM v_resultats WITH NO DATA;
CREATE OR REPLACE VIEW pub_resultats AS SELECT * FROM pub_resultats_data;

CREATE TABLE IF NOT EXISTS pub_file_active_data AS
    SELECT *, NULL::text[] AS cellules_masquees, NULL::timestamptz AS publie_le
    FROM v_file_active WITH NO DATA;
CREATE OR REPLACE VIEW pub_file_active AS SELECT * FROM pub_file_active_data;

CREATE TABLE IF NOT EXISTS pub_file_active_periode_data AS
    SELECT *, NULL::text[] AS cellules_masquees, NULL::timestamptz AS publie_le
    FROM v_file_active_periode WITH NO DATA;
CREATE OR REPLACE VIEW pub_file_active_periode AS SELECT * FROM pub_file_active_periode_data;

CREATE TABLE IF NOT EXISTS pub_delais_data AS
    SELECT *, NULL::text[] AS cellules_masquees, NULL::timestamptz AS publie_le
    FROM v_delais WITH NO DATA;
CREATE OR REPLACE VIEW pub_delais AS SELECT * FROM pub_delais_data;

CREATE TABLE IF NOT EXISTS pub_motifs_cloture_data AS
    SELECT *, NULL::text[] AS cellules_masquees, NULL::timestamptz AS publie_le
    FROM v_motifs_cloture WITH NO DATA;
CREATE OR REPLACE VIEW pub_motifs_cloture AS SELECT * FROM pub_motifs_cloture_data;

CREATE TABLE IF NOT EXISTS pub_dysfonctionnements_data AS
    SELECT *, NULL::text[] AS cellules_masquees, NULL::timestamptz AS publie_le
    FROM v_dysfonctionnements_categorie WITH NO DATA;
CREATE OR REPLACE VIEW pub_dysfonctionnements AS SELECT * FROM pub_dysfonctionnements_data;

CREATE OR REPLACE VIEW pub_fraicheur AS
    SELECT source, evenement_le_plus_recent, derniere_application, retard_secondes FROM v_fraicheur;
