//! Client queries DataFusion cannot plan as sent, replaced by equivalents over the same catalog
//! tables (as datafusion-pg-catalog does for pgcli and psql). Each entry names the client, how
//! its query is recognised, and why the replacement answers the same.

/// The replacement for `sql` when it is a known client query.
pub fn replace(sql: &str) -> Option<&'static str> {
    // asyncpg's type introspection (INTRO_LOOKUP_TYPES, INTRO_LOOKUP_TYPES_13): a recursive
    // CTE with correlated subqueries in CASE. Lakegate has no domains and no composite
    // columns to expand (basetype, attrtypoids and attrnames are NULL for every type it
    // serves), so the tree is the asked types plus element and range subtypes two levels down.
    // Its result columns must be types asyncpg decodes without introspecting (no int4[]).
    if sql.contains("WITH RECURSIVE typeinfo_tree(") && sql.contains("ti.oid = any($1::oid[])") {
        return Some(ASYNCPG_TYPES);
    }
    None
}

const ASYNCPG_TYPES: &str = "
WITH ti AS (
    SELECT t.oid AS oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind,
           CAST(NULL AS INT) AS basetype, t.typelem AS elemtype, elem_t.typdelim AS elemdelim,
           range_t.rngsubtype AS range_subtype, CAST(NULL AS TEXT[]) AS attrtypoids,
           CAST(NULL AS TEXT[]) AS attrnames
    FROM pg_catalog.pg_type AS t
    INNER JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_type elem_t
           ON t.typlen = -1 AND t.typelem <> 0 AND t.typelem = elem_t.oid
    LEFT JOIN pg_catalog.pg_range range_t ON t.oid = range_t.rngtypid
),
d0 AS (SELECT ti.*, 0 AS depth FROM ti WHERE ti.oid = ANY($1::oid[])),
d1 AS (SELECT ti.*, 1 AS depth FROM ti, d0
       WHERE ti.oid = d0.elemtype OR ti.oid = d0.range_subtype),
d2 AS (SELECT ti.*, 2 AS depth FROM ti, d1
       WHERE ti.oid = d1.elemtype OR ti.oid = d1.range_subtype)
SELECT DISTINCT oid, ns, name, kind, basetype, elemtype, elemdelim, range_subtype,
       attrtypoids, attrnames, depth,
       CAST(NULL AS TEXT) AS basetype_name,
       CASE WHEN elemtype = 0 THEN '-' ELSE format_type(elemtype, NULL) END AS elemtype_name,
       CASE WHEN range_subtype IS NULL THEN NULL ELSE format_type(range_subtype, NULL) END
           AS range_subtype_name
FROM (SELECT * FROM d0 UNION ALL SELECT * FROM d1 UNION ALL SELECT * FROM d2) AS tree
ORDER BY depth DESC";
