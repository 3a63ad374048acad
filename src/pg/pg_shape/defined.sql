-- The relations of pg_catalog and information_schema Lakegate defines itself, as SQL over the
-- session's pg_catalog (read by pg_shape.rs `defined`). Each block starts with a "relation:"
-- comment line naming the relations it defines and gives a subset of their columns; the
-- others are NULL. pg_type's rows for the session's relations are built in code (row_types).

-- relation: pg_catalog.pg_stat_activity
SELECT d.oid AS datid, d.datname, pg_backend_pid() AS pid, CAST(r.oid AS INT) AS usesysid, current_user AS usename, current_setting('application_name') AS application_name, CAST('127.0.0.1' AS VARCHAR) AS client_addr, 'active' AS state, 'client backend' AS backend_type, '' AS query
FROM pg_catalog.pg_database d
LEFT JOIN pg_catalog.pg_roles r ON r.rolname = current_user
WHERE d.datname = current_database()

-- relation: pg_catalog.pg_subscription
-- CDC subscriptions (src/ingest); the connection string never has its password.
SELECT s.oid, d.oid AS subdbid, CAST('0/0' AS VARCHAR) AS subskiplsn, s.subname, CAST(10 AS INT) AS subowner, s.subenabled, false AS subbinary, false AS substream, 'd' AS subtwophasestate, false AS subdisableonerr, s.subconninfo, s.subslotname, 'off' AS subsynccommit, string_to_array(btrim(s.subpublications, '{}'), ',') AS subpublications
FROM pg_catalog."lakegate$pg_subscription" s
CROSS JOIN (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) d

-- relation: pg_catalog.pg_stat_subscription
SELECT s.subid, s.subname, s.pid, CAST(NULL AS INT) AS relid, s.received_lsn, CAST(NULL AS TIMESTAMP WITH TIME ZONE) AS last_msg_send_time, s.last_msg_receipt_time, s.latest_end_lsn, s.latest_end_time
FROM pg_catalog."lakegate$pg_stat_subscription" s

-- relation: pg_catalog.pg_namespace
-- `public` belongs to pg_database_owner (6171) and grants usage to all, as in a new
-- PostgreSQL database.
SELECT oid, nspname, CAST(CASE WHEN nspname = 'public' THEN 6171 ELSE 10 END AS INT) AS nspowner, CASE WHEN nspname = 'public' THEN ['pg_database_owner=UC/pg_database_owner', '=U/pg_database_owner'] END AS nspacl
FROM pg_catalog."lakegate$namespaces"

-- relation: pg_catalog.pg_class
SELECT oid, relname, relnamespace, reltype, CAST(0 AS INT) AS reloftype, CAST(10 AS INT) AS relowner, CAST(CASE WHEN relkind IN ('r', 'm') THEN 2 ELSE 0 END AS INT) AS relam, CASE WHEN relkind IN ('r', 'm') THEN oid ELSE 0 END AS relfilenode, CAST(0 AS INT) AS reltablespace, CAST(0 AS INT) AS relpages, CAST(-1 AS REAL) AS reltuples, CAST(0 AS INT) AS relallvisible, CAST(0 AS INT) AS reltoastrelid, false AS relhasindex, false AS relisshared, relpersistence, relkind, relnatts, CAST(0 AS SMALLINT) AS relchecks, relkind = 'v' AS relhasrules, false AS relhastriggers, false AS relhassubclass, false AS relrowsecurity, false AS relforcerowsecurity, COALESCE(populated, true) AS relispopulated, CASE WHEN relkind = 'v' THEN 'n' ELSE 'd' END AS relreplident, false AS relispartition, CAST(0 AS INT) AS relrewrite, CAST(CASE WHEN relkind IN ('r', 'm') THEN 716 ELSE 0 END AS BIGINT) AS relfrozenxid, CAST(CASE WHEN relkind IN ('r', 'm') THEN 1 ELSE 0 END AS BIGINT) AS relminmxid
FROM pg_catalog."lakegate$relations"

-- relation: pg_catalog.pg_stat_user_tables pg_catalog.pg_stat_all_tables
-- The session's tables (no row counts: see `objects`).
SELECT r.oid AS relid, n.nspname AS schemaname, r.relname, CAST(0 AS BIGINT) AS seq_scan, CAST(0 AS BIGINT) AS seq_tup_read, CAST(0 AS BIGINT) AS idx_scan, CAST(0 AS BIGINT) AS idx_tup_fetch, r.reltuples AS n_tup_ins, CAST(0 AS BIGINT) AS n_tup_upd, CAST(0 AS BIGINT) AS n_tup_del, CAST(0 AS BIGINT) AS n_tup_hot_upd, r.reltuples AS n_live_tup, CAST(0 AS BIGINT) AS n_dead_tup, r.reltuples AS n_mod_since_analyze, r.reltuples AS n_ins_since_vacuum, CAST(0 AS BIGINT) AS vacuum_count, CAST(0 AS BIGINT) AS autovacuum_count, CAST(0 AS BIGINT) AS analyze_count, CAST(0 AS BIGINT) AS autoanalyze_count
FROM pg_catalog."lakegate$relations" r
JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
WHERE r.relkind = 'r'

-- relation: pg_catalog.pg_matviews
SELECT n.nspname AS schemaname, r.relname AS matviewname, pg_get_userbyid(10) AS matviewowner, CAST(NULL AS VARCHAR) AS tablespace, false AS hasindexes, r.populated AS ispopulated, r.definition
FROM pg_catalog."lakegate$relations" r
JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
WHERE r.relkind = 'm'

-- relation: pg_catalog.pg_stat_ssl
SELECT pg_backend_pid() AS pid, COALESCE(current_setting('ssl', true), 'off') = 'on' AS ssl

-- relation: information_schema.character_sets
SELECT 'UTF8' AS character_set_name, 'UCS' AS character_repertoire, 'UTF8' AS form_of_use, current_database() AS default_collate_catalog

-- relation: pg_catalog.pg_attribute
-- A column's length, alignment and storage are its type's (pg_type).
SELECT c.attrelid, c.attname, c.atttypid, COALESCE(t.typlen, c.attlen) AS attlen, c.attnum, CAST(-1 AS INT) AS attcacheoff, c.atttypmod, CAST(CASE WHEN t.typcategory = 'A' THEN 1 ELSE 0 END AS SMALLINT) AS attndims, COALESCE(t.typbyval, c.attlen > 0) AS attbyval, COALESCE(t.typalign, 'i') AS attalign, COALESCE(t.typstorage, 'x') AS attstorage, '' AS attcompression, c.attnotnull, false AS atthasdef, false AS atthasmissing, '' AS attidentity, '' AS attgenerated, false AS attisdropped, true AS attislocal, CAST(0 AS INT) AS attinhcount, CAST(-1 AS INT) AS attstattarget, CAST(CASE WHEN c.atttypid IN (25, 1042, 1043) THEN 100 ELSE 0 END AS INT) AS attcollation
FROM pg_catalog."lakegate$columns" c
LEFT JOIN pg_catalog."lakegate$static$pg_type" t ON t.oid = c.atttypid
UNION ALL SELECT r.oid AS attrelid, s.attname, CAST(s.atttypid AS INT) AS atttypid, CAST(s.attlen AS SMALLINT) AS attlen, CAST(s.attnum AS SMALLINT) AS attnum, CAST(-1 AS INT) AS attcacheoff, CAST(-1 AS INT) AS atttypmod, CAST(0 AS SMALLINT) AS attndims, s.attlen <> 6 AS attbyval, s.attalign AS attalign, 'p' AS attstorage, '' AS attcompression, true AS attnotnull, false AS atthasdef, false AS atthasmissing, '' AS attidentity, '' AS attgenerated, false AS attisdropped, true AS attislocal, CAST(0 AS INT) AS attinhcount, CAST(0 AS INT) AS attstattarget, CAST(0 AS INT) AS attcollation
FROM pg_catalog."lakegate$relations" r
CROSS JOIN (VALUES ('tableoid', 26, 4, -6, 'i'), ('cmax', 29, 4, -5, 'i'), ('xmax', 28, 4, -4, 'i'), ('cmin', 29, 4, -3, 'i'), ('xmin', 28, 4, -2, 'i'), ('ctid', 27, 6, -1, 's')) AS s(attname, atttypid, attlen, attnum, attalign)
WHERE r.relkind IN ('r', 'm')

-- relation: pg_catalog.pg_roles
-- The session's own role (PostgreSQL's bootstrap superuser oid owns every object here).
SELECT current_user AS rolname, current_setting('is_superuser') = 'on' AS rolsuper, true AS rolinherit, current_setting('is_superuser') = 'on' AS rolcreaterole, current_setting('is_superuser') = 'on' AS rolcreatedb, true AS rolcanlogin, current_setting('is_superuser') = 'on' AS rolreplication, CAST(-1 AS INT) AS rolconnlimit, '********' AS rolpassword, current_setting('is_superuser') = 'on' AS rolbypassrls, CAST(10 AS INT) AS oid

-- relation: pg_catalog.pg_settings
-- The built-in settings, with the session's value where Lakegate has the setting.
SELECT name, COALESCE(current_setting(name, true), setting) AS setting, unit, category, short_desc, extra_desc, context, vartype, source, min_val, max_val, enumvals, boot_val, COALESCE(current_setting(name, true), reset_val) AS reset_val, sourcefile, sourceline, pending_restart
FROM pg_catalog."lakegate$static$pg_settings"

-- relation: pg_catalog.pg_user
SELECT rolname AS usename, oid AS usesysid, rolcreatedb AS usecreatedb, rolsuper AS usesuper, rolreplication AS userepl, rolbypassrls AS usebypassrls, '********' AS passwd, rolvaliduntil AS valuntil
FROM pg_catalog.pg_roles
WHERE rolcanlogin

-- relation: information_schema.information_schema_catalog_name
SELECT current_database() AS catalog_name

-- relation: information_schema.schemata
SELECT current_database() AS catalog_name, n.nspname AS schema_name, pg_get_userbyid(n.nspowner) AS schema_owner
FROM pg_catalog.pg_namespace n

-- relation: information_schema.tables
SELECT COALESCE(NULLIF(r.relcatalog, ''), current_database()) AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, CASE WHEN n.nspname LIKE 'pg_temp%' THEN 'LOCAL TEMPORARY' WHEN c.relkind IN ('r', 'p') THEN 'BASE TABLE' WHEN c.relkind = 'v' THEN 'VIEW' WHEN c.relkind = 'f' THEN 'FOREIGN' ELSE NULL END AS table_type, CASE WHEN c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') THEN 'YES' ELSE 'NO' END AS is_insertable_into, 'NO' AS is_typed
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog."lakegate$relations" r ON r.oid = c.oid
WHERE c.relkind IN ('r', 'v', 'f', 'p')

-- relation: information_schema.views
SELECT current_database() AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, v.definition AS view_definition, 'NONE' AS check_option, 'NO' AS is_updatable, 'NO' AS is_insertable_into, 'NO' AS is_trigger_updatable, 'NO' AS is_trigger_deletable, 'NO' AS is_trigger_insertable_into
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_views v ON v.schemaname = n.nspname AND v.viewname = c.relname
WHERE c.relkind = 'v'

-- relation: information_schema.columns
SELECT COALESCE(NULLIF(r.relcatalog, ''), current_database()) AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, a.attname AS column_name, CAST(a.attnum AS INT) AS ordinal_position, CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable, CASE WHEN t.typcategory = 'A' THEN 'ARRAY' ELSE format_type(a.atttypid, NULL) END AS data_type, CASE WHEN a.atttypid IN (1042, 1043) AND a.atttypmod > 4 THEN a.atttypmod - 4 END AS character_maximum_length, CASE WHEN a.atttypid IN (25, 1042, 1043) THEN 1073741824 END AS character_octet_length, CASE a.atttypid WHEN 21 THEN 16 WHEN 23 THEN 32 WHEN 20 THEN 64 WHEN 700 THEN 24 WHEN 701 THEN 53 WHEN 1700 THEN CASE WHEN a.atttypmod > 4 THEN ((a.atttypmod - 4) / 65536) % 65536 END END AS numeric_precision, CASE WHEN a.atttypid IN (21, 23, 20, 1700) THEN 10 WHEN a.atttypid IN (700, 701) THEN 2 END AS numeric_precision_radix, CASE WHEN a.atttypid IN (21, 23, 20) THEN 0 WHEN a.atttypid = 1700 AND a.atttypmod > 4 THEN (a.atttypmod - 4) % 65536 END AS numeric_scale, CASE WHEN a.atttypid IN (1082) THEN 0 WHEN a.atttypid IN (1083, 1114, 1184, 1266) THEN CASE WHEN a.atttypmod >= 0 THEN a.atttypmod ELSE 6 END END AS datetime_precision, current_database() AS udt_catalog, tn.nspname AS udt_schema, t.typname AS udt_name, CAST(a.attnum AS VARCHAR) AS dtd_identifier, 'NO' AS is_self_referencing, 'NO' AS is_identity, 'NEVER' AS is_generated, CASE WHEN c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') THEN 'YES' ELSE 'NO' END AS is_updatable
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_catalog."lakegate$relations" r ON r.oid = c.oid
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'f', 'p', 'm')

-- relation: information_schema.table_privileges
SELECT 'lakegate' AS grantor, current_user AS grantee, current_database() AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, p.privilege_type, 'NO' AS is_grantable, CASE WHEN p.privilege_type = 'SELECT' THEN 'YES' ELSE 'NO' END AS with_hierarchy
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN (VALUES ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE')) AS p(privilege_type)
WHERE c.relkind IN ('r', 'v', 'f', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND has_table_privilege(c.oid, p.privilege_type)

-- relation: information_schema.enabled_roles information_schema.applicable_roles
SELECT current_user AS role_name, current_user AS grantee, 'NO' AS is_grantable

-- relation: pg_catalog.pg_tables
-- Tables only: the session's views and materialized views are not (a tool drops what
-- pg_tables lists with DROP TABLE).
SELECT t.* FROM pg_catalog."lakegate$raw$pg_tables" t
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog."lakegate$relations" r
JOIN pg_catalog."lakegate$namespaces" n ON n.oid = r.relnamespace
WHERE n.nspname = t.schemaname AND r.relname = t.tablename AND r.relkind IN ('v', 'm'))

-- relation: pg_catalog.pg_views
-- The session's views with their definitions (the built-in rows are added to these).
SELECT n.nspname AS schemaname, r.relname AS viewname, pg_get_userbyid(10) AS viewowner, r.definition
FROM pg_catalog."lakegate$relations" r
JOIN pg_catalog."lakegate$namespaces" n ON n.oid = r.relnamespace
WHERE r.relkind = 'v'

-- relation: pg_catalog.pg_description
-- COMMENT ON of the session's relations and their columns (pg_class's).
SELECT objoid, CAST(1259 AS INT) AS classoid, objsubid, description
FROM pg_catalog."lakegate$descriptions"
