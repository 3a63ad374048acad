"""Startup and browsing queries of BI tools and drivers that cannot run here, replayed verbatim
(their text as the tools send it, from statement logs of a real PostgreSQL) by
catalog_matrix.py against PostgreSQL and Lakegate, whose answers are compared.

Each tool is a list of statements, sent in order on one connection. `PIPELINED` tools send their
statements the way their driver does: Parse/Bind/Describe/Execute for each, one Sync.
"""

TABLE = "items"  # the table of catalog_matrix.SETUP the tools browse (schema shop)

DBEAVER = [
    "SET extra_float_digits = 3",
    "SET application_name = 'PostgreSQL JDBC Driver'",
    "SET application_name = 'DBeaver 25.1.5 - Main <lakegate>'",
    "SELECT current_schema(),session_user",
    "SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n\n"
    "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass\n"
    " ORDER BY nspname",
    "SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t "
    "JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = 1034",
    "SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   "
    "LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           "
    "join ( select s.r, (current_schemas(false))[s.r] as nspname                    "
    "from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          "
    "using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  WHERE pg_type.oid = 1034  ORDER BY sp.r, pg_type.oid DESC",
    "SHOW search_path",
    "SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname='lakegate'",
    "SELECT * FROM pg_catalog.pg_settings where name='standard_conforming_strings'",
    "SELECT string_agg(word, ',') from pg_catalog.pg_get_keywords() where word <> ALL "
    "('{a,abs,absolute,action,ada,add,admin,after,all,allocate,alter,always,and,any,are,array,as,asc,"
    "asensitive,assertion,assignment,asymmetric,at,atomic,attribute,attributes,authorization,avg,before,"
    "begin,bernoulli,between,bigint,binary,blob,boolean,both,breadth,by,c,call,called,cardinality,cascade,"
    "cascaded,case,cast,catalog,char,character,check,close,coalesce,collate,column,commit,constraint,"
    "create,cross,cube,current,cursor,date,day,deallocate,dec,decimal,declare,default,delete,desc,"
    "distinct,double,drop,else,end,escape,except,exists,false,fetch,float,for,foreign,from,full,grant,"
    "group,having,in,inner,insert,int,integer,intersect,interval,into,is,join,left,like,limit,local,"
    "natural,not,null,numeric,of,on,only,or,order,outer,primary,real,references,right,rollback,select,"
    "set,smallint,some,table,then,time,timestamp,to,true,union,unique,update,user,using,values,varchar,"
    "view,when,where,with}'::text[])",
    "SELECT version()",
    "SELECT * FROM pg_catalog.pg_enum WHERE 1<>1 LIMIT 1",
    "SELECT reltype FROM pg_catalog.pg_class WHERE 1<>1 LIMIT 1",
    "SELECT t.oid,t.*,c.relkind,format_type(nullif(t.typbasetype, 0), t.typtypmod) as base_type_name, d.description\n"
    "FROM pg_catalog.pg_type t\n"
    "LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=t.typelem\n"
    "LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid=t.typrelid\n"
    "LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid=d.objoid\n"
    "WHERE t.typname IS NOT NULL\n"
    "AND (c.relkind IS NULL OR c.relkind = 'c') AND (et.typcategory IS NULL OR et.typcategory <> 'C')",
    # The navigator: tables of a schema, then a table's columns.
    "SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as partition_expr,  "
    "pg_catalog.pg_get_partkeydef(c.oid) as partition_key \n"
    "FROM pg_catalog.pg_class c\n"
    "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass\n"
    "WHERE c.relnamespace=(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'shop') AND c.relkind not in ('i','I','c')",
    "SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description,dep.objid\n"
    "FROM pg_catalog.pg_attribute a\n"
    "INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)\n"
    "LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)\n"
    "LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)\n"
    "LEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' and dep.refobjsubid = a.attnum "
    "and dep.classid = dep.refclassid\n"
    "WHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.relnamespace="
    "(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'shop') AND c.relname = 'items'\n"
    "ORDER BY a.attnum",
    "SELECT i.*,i.indkey as keys,c.relname,c.relnamespace,c.relam,c.reltablespace,tc.relname as tabrelname,"
    "dsc.description,pg_catalog.pg_get_expr(i.indpred, i.indrelid) as pred_expr,"
    "pg_catalog.pg_get_expr(i.indexprs, i.indrelid, true) as expr,pg_catalog.pg_relation_size(i.indexrelid) as index_rel_size,"
    "pg_catalog.pg_stat_get_numscans(i.indexrelid) as index_num_scans \n"
    "FROM pg_catalog.pg_index i \n"
    "INNER JOIN pg_catalog.pg_class c ON c.oid=i.indexrelid \n"
    "INNER JOIN pg_catalog.pg_class tc ON tc.oid=i.indrelid \n"
    "LEFT OUTER JOIN pg_catalog.pg_description dsc ON i.indexrelid=dsc.objoid \n"
    "WHERE  c.relnamespace=(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'shop') ORDER BY tabrelname, c.relname",
    "SELECT c.oid,c.*,t.relname as tabrelname,rt.relnamespace as refnamespace,d.description, "
    "case when c.contype='c' then \"substring\"(pg_get_constraintdef(c.oid), 7) else null end consrc_copy\n"
    "FROM pg_catalog.pg_constraint c\n"
    "INNER JOIN pg_catalog.pg_class t ON t.oid=c.conrelid\n"
    "LEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid=c.confrelid\n"
    "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_constraint'::regclass\n"
    "WHERE t.relnamespace=(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'shop')\n"
    "ORDER BY c.oid",
]

METABASE = [
    "SET extra_float_digits = 2",
    "SET application_name = 'Metabase v0.55.1 [f8f63fdf-d8f8-4573-86ea-4fe4a9548041]'",
    "SHOW TRANSACTION ISOLATION LEVEL",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
    "SELECT nspname AS \"TABLE_SCHEM\", current_database() AS \"TABLE_CATALOG\" FROM pg_catalog.pg_namespace  "
    "WHERE nspname <> 'pg_toast' AND (nspname !~ '^pg_temp_'  OR nspname = (pg_catalog.current_schemas(true))[1]) "
    "AND (nspname !~ '^pg_toast_temp_'  OR nspname = replace((pg_catalog.current_schemas(true))[1], 'pg_temp_', 'pg_toast_temp_'))  "
    "ORDER BY \"TABLE_SCHEM\"",
    """with table_privileges as (
 select
   NULL as role,
   t.schemaname as schema,
   t.objectname as table,
   pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'update') as update,
   pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'select') as select,
   pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'insert') as insert,
   pg_catalog.has_table_privilege(     current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'delete') as delete
 from (
   select schemaname, tablename as objectname from pg_catalog.pg_tables
   union
   select schemaname, viewname as objectname from pg_catalog.pg_views
   union
   select schemaname, matviewname as objectname from pg_catalog.pg_matviews
 ) t
 where t.schemaname !~ '^pg_'
   and t.schemaname <> 'information_schema'
   and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')
)
select t.*
from table_privileges t""",
    "SELECT \"n\".\"nspname\" AS \"schema\", \"c\".\"relname\" AS \"name\", CASE \"c\".\"relkind\" WHEN 'r' THEN 'TABLE' "
    "WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' "
    "ELSE NULL END AS \"type\", \"d\".\"description\" AS \"description\", \"stat\".\"n_live_tup\" AS \"estimated_row_count\" "
    "FROM \"pg_catalog\".\"pg_class\" AS \"c\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"c\".\"relnamespace\" = \"n\".\"oid\" "
    "LEFT JOIN \"pg_catalog\".\"pg_description\" AS \"d\" ON (\"c\".\"oid\" = \"d\".\"objoid\") AND (\"d\".\"objsubid\" = '0') "
    "AND (\"d\".\"classoid\" = 'pg_class'::regclass) LEFT JOIN \"pg_stat_user_tables\" AS \"stat\" ON (\"n\".\"nspname\" = \"stat\".\"schemaname\") "
    "AND (\"c\".\"relname\" = \"stat\".\"relname\") WHERE (\"c\".\"relnamespace\" = \"n\".\"oid\") AND (\"n\".\"nspname\" !~ '^pg_') "
    "AND (\"n\".\"nspname\" <> 'information_schema') AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND (\"n\".\"nspname\" IN ('shop')) "
    "ORDER BY \"type\" ASC, \"schema\" ASC, \"name\" ASC",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
    "show timezone",
    "SELECT \"shop\".\"items\".\"id\" AS \"id\", \"shop\".\"items\".\"name\" AS \"name\", \"shop\".\"items\".\"price\" AS \"price\" "
    "FROM \"shop\".\"items\" ORDER BY \"shop\".\"items\".\"id\" ASC LIMIT 2000",
    "SELECT COUNT(*) AS \"count\" FROM \"shop\".\"items\" WHERE \"shop\".\"items\".\"price\" > 1",
]

GRAFANA = [
    "SELECT 1",
    "SELECT current_setting('server_version_num')::int/100 as version",
    "select 1 from pg_extension where extname='timescaledb'",
    """SELECT
    CASE WHEN
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1""",
    """SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('shop.items'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('shop.items'))[1]
          AND quote_ident(table_name) = (parse_ident('shop.items'))[2]
        ELSE quote_ident(table_name) = 'shop.items'
          AND
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END""",
    "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN "
    "('information_schema', 'pg_catalog', 'pg_toast') AND schema_name NOT LIKE 'pg_temp%' ORDER BY schema_name",
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop' ORDER BY table_name",
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'shop' "
    "AND table_name = 'items' ORDER BY column_name",
    "SELECT date_trunc('day', created) AS \"time\", count(*) AS value FROM shop.items "
    "WHERE created BETWEEN '2024-01-01T00:00:00Z' AND '2026-01-01T00:00:00Z' GROUP BY 1 ORDER BY 1",
]

DATAGRIP = [
    "SET extra_float_digits = 3",
    "SET application_name = ''",
    "select version()",
    "SET application_name = 'DataGrip 2025.2.3'",
    "select current_database() as a, current_schemas(false) as b",
    "SHOW TRANSACTION ISOLATION LEVEL",
    "select round(extract(epoch from pg_postmaster_start_time() at time zone 'UTC')) as startup_time",
    """select case
  when pg_catalog.pg_is_in_recovery()
    then null
  else
    (pg_catalog.txid_current() % 4294967296)::varchar::bigint
  end as current_txid""",
    """select N.oid::bigint as id,
       datname as name,
       D.description,
       datistemplate as is_template,
       datallowconn as allow_connections,
       pg_catalog.pg_get_userbyid(N.datdba) as "owner"
from pg_catalog.pg_database N
  left join pg_catalog.pg_shdescription D on N.oid = D.objoid
order by case when datname = pg_catalog.current_database() then -1::bigint else N.oid::bigint end""",
    """select N.oid::bigint as id,
       N.xmin as state_number,
       nspname as name,
       D.description,
       pg_catalog.pg_get_userbyid(N.nspowner) as "owner"
from pg_catalog.pg_namespace N
  left join pg_catalog.pg_description D on N.oid = D.objoid
order by case when nspname = pg_catalog.current_schema() then -1::bigint else N.oid::bigint end""",
    "show DateStyle",
    """select R.oid::bigint as role_id, rolname as role_name,
  rolsuper is_super, rolinherit is_inherit,
  rolcreaterole can_createrole, rolcreatedb can_createdb,
  rolcanlogin can_login, rolreplication /* false */ is_replication,
  rolconnlimit conn_limit, rolvaliduntil valid_until,
  rolbypassrls /* false */ bypass_rls, rolconfig config,
  D.description
from pg_catalog.pg_roles R
  left join pg_catalog.pg_shdescription D on D.objoid = R.oid""",
    """select member id, roleid role_id, admin_option
          from pg_catalog.pg_auth_members order by id, roleid::text""",
    "SELECT e.typdelim FROM pg_catalog.pg_type t, pg_catalog.pg_type e WHERE t.oid = '1034' and t.typelem = e.oid",
    " SELECT e.oid, n.nspname = ANY(current_schemas(true)), n.nspname, e.typname FROM pg_catalog.pg_type t "
    "JOIN pg_catalog.pg_type e ON t.typelem = e.oid JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = '1034'",
    "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
]

PGCLI = [
    "SELECT 1",
    "show time zone",
    "SELECT * FROM unnest(current_schemas(true))",
    """SELECT  nspname
            FROM    pg_catalog.pg_namespace
            ORDER BY 1""",
    """SELECT  n.nspname schema_name,
                    c.relname table_name
            FROM    pg_catalog.pg_class c
                    LEFT JOIN pg_catalog.pg_namespace n
                        ON n.oid = c.relnamespace
            WHERE   c.relkind = ANY('{r,p,f}')
            ORDER BY 1,2;""",
    """SELECT  nsp.nspname schema_name,
                            cls.relname table_name,
                            att.attname column_name,
                            att.atttypid::regtype::text type_name,
                            att.atthasdef AS has_default,
                            pg_catalog.pg_get_expr(def.adbin, def.adrelid, true) as default
                    FROM    pg_catalog.pg_attribute att
                            INNER JOIN pg_catalog.pg_class cls
                                ON att.attrelid = cls.oid
                            INNER JOIN pg_catalog.pg_namespace nsp
                                ON cls.relnamespace = nsp.oid
                            LEFT OUTER JOIN pg_attrdef def
                                ON def.adrelid = att.attrelid
                                AND def.adnum = att.attnum
                    WHERE   cls.relkind = ANY('{r,p,f}')
                            AND NOT att.attisdropped
                            AND att.attnum  > 0
                    ORDER BY 1, 2, att.attnum""",
    """SELECT  n.nspname schema_name,
                    c.relname table_name
            FROM    pg_catalog.pg_class c
                    LEFT JOIN pg_catalog.pg_namespace n
                        ON n.oid = c.relnamespace
            WHERE   c.relkind = ANY('{v,m}')
            ORDER BY 1,2;""",
    """SELECT n.nspname schema_name,
                               t.typname type_name
                        FROM   pg_catalog.pg_type t
                               INNER JOIN pg_catalog.pg_namespace n
                                  ON n.oid = t.typnamespace
                        WHERE ( t.typrelid = 0  -- non-composite types
                                OR (  -- composite type, but not a table
                                      SELECT c.relkind = 'c'
                                      FROM pg_catalog.pg_class c
                                      WHERE c.oid = t.typrelid
                                    )
                              )
                              AND NOT EXISTS( -- ignore array types
                                    SELECT  1
                                    FROM    pg_catalog.pg_type el
                                    WHERE   el.oid = t.typelem AND el.typarray = t.oid
                                  )
                              AND n.nspname <> 'pg_catalog'
                              AND n.nspname <> 'information_schema'
                        ORDER BY 1, 2""",
    """SELECT d.datname
            FROM pg_catalog.pg_database d
            ORDER BY 1""",
]

# Npgsql 4.0.x (Power BI Desktop ships 4.0.10-4.0.17): PostgresDatabaseInfo's type loading, sent
# as one pipelined batch (AllResultTypesAreUnknown: every result column in text).
NPGSQL_TYPES = """/*** Load all supported types ***/
SELECT ns.nspname, a.typname, a.oid, a.typrelid, a.typbasetype,
CASE WHEN pg_proc.proname='array_recv' THEN 'a' ELSE a.typtype END AS type,
CASE
  WHEN pg_proc.proname='array_recv' THEN a.typelem
  WHEN a.typtype='r' THEN rngsubtype
  ELSE 0
END AS elemoid,
CASE
  WHEN pg_proc.proname IN ('array_recv','oidvectorrecv') THEN 3    /* Arrays last */
  WHEN a.typtype='r' THEN 2                                        /* Ranges before */
  WHEN a.typtype='d' THEN 1                                        /* Domains before */
  ELSE 0                                                           /* Base types first */
END AS ord
FROM pg_type AS a
JOIN pg_namespace AS ns ON (ns.oid = a.typnamespace)
JOIN pg_proc ON pg_proc.oid = a.typreceive
LEFT OUTER JOIN pg_class AS cls ON (cls.oid = a.typrelid)
LEFT OUTER JOIN pg_type AS b ON (b.oid = a.typelem)
LEFT OUTER JOIN pg_class AS elemcls ON (elemcls.oid = b.typrelid)
LEFT OUTER JOIN pg_range ON (pg_range.rngtypid = a.oid) 
WHERE
  a.typtype IN ('b', 'r', 'e', 'd') OR         /* Base, range, enum, domain */
  (a.typtype = 'c' AND cls.relkind='c') OR /* User-defined free-standing composites (not table composites) by default */
  (pg_proc.proname='array_recv' AND (
    b.typtype IN ('b', 'r', 'e', 'd') OR       /* Array of base, range, enum, domain */
    (b.typtype = 'p' AND b.typname IN ('record', 'void')) OR /* Arrays of special supported pseudo-types */
    (b.typtype = 'c' AND elemcls.relkind='c')  /* Array of user-defined free-standing composites (not table composites) */
  )) OR
  (a.typtype = 'p' AND a.typname IN ('record', 'void'))  /* Some special supported pseudo-types */
ORDER BY ord"""

NPGSQL_COMPOSITES = """/*** Load field definitions for (free-standing) composite types ***/
SELECT typ.oid, att.attname, att.atttypid
FROM pg_type AS typ
JOIN pg_namespace AS ns ON (ns.oid = typ.typnamespace)
JOIN pg_class AS cls ON (cls.oid = typ.typrelid)
JOIN pg_attribute AS att ON (att.attrelid = typ.typrelid)
WHERE
  (typ.typtype = 'c' AND cls.relkind='c') AND
  attnum > 0 AND     /* Don't load system attributes */
  NOT attisdropped
ORDER BY typ.oid, att.attnum"""

NPGSQL_ENUMS = """/*** Load enum fields ***/
SELECT pg_type.oid, enumlabel
FROM pg_enum
JOIN pg_type ON pg_type.oid=enumtypid
ORDER BY oid, enumsortorder"""

NPGSQL = ["SELECT version();", NPGSQL_TYPES, NPGSQL_COMPOSITES, NPGSQL_ENUMS]

# Power BI's navigator (Npgsql GetSchema and its own information_schema queries).
POWERBI = [
    "DISCARD ALL",
    """select TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE
        from INFORMATION_SCHEMA.tables
        where TABLE_SCHEMA not in ('information_schema', 'pg_catalog')
        order by TABLE_SCHEMA, TABLE_NAME""",
    """select COLUMN_NAME, ORDINAL_POSITION, IS_NULLABLE, case when (data_type like '%unsigned%') then DATA_TYPE || ' unsigned' else DATA_TYPE end as DATA_TYPE
        from INFORMATION_SCHEMA.columns
        where TABLE_SCHEMA = 'shop' and TABLE_NAME = 'items'
        order by TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION""",
    "select character_set_name from INFORMATION_SCHEMA.character_sets",
    """select i.CONSTRAINT_SCHEMA || '_' || i.CONSTRAINT_NAME as INDEX_NAME, ii.COLUMN_NAME, ii.ORDINAL_POSITION, case when i.CONSTRAINT_TYPE = 'PRIMARY KEY' then 'Y' else 'N' end as PRIMARY_KEY
        from INFORMATION_SCHEMA.table_constraints i inner join INFORMATION_SCHEMA.key_column_usage ii on i.CONSTRAINT_SCHEMA = ii.CONSTRAINT_SCHEMA and i.CONSTRAINT_NAME = ii.CONSTRAINT_NAME and i.TABLE_SCHEMA = ii.TABLE_SCHEMA and i.TABLE_NAME = ii.TABLE_NAME
        where i.TABLE_SCHEMA = 'shop' and i.TABLE_NAME = 'items'
        and i.CONSTRAINT_TYPE in ('PRIMARY KEY', 'UNIQUE')
        order by i.CONSTRAINT_SCHEMA || '_' || i.CONSTRAINT_NAME, ii.TABLE_SCHEMA, ii.TABLE_NAME, ii.ORDINAL_POSITION""",
    """select
            pkcol.COLUMN_NAME as PK_COLUMN_NAME,
            fkcol.TABLE_SCHEMA AS FK_TABLE_SCHEMA,
            fkcol.TABLE_NAME AS FK_TABLE_NAME,
            fkcol.COLUMN_NAME as FK_COLUMN_NAME,
            fkcol.ORDINAL_POSITION as ORDINAL,
            fkcon.CONSTRAINT_SCHEMA || '_' || fkcol.TABLE_NAME || '_' || 'items' || '_' || fkcon.CONSTRAINT_NAME as FK_NAME
        from
            (select distinct constraint_catalog, constraint_schema, unique_constraint_schema, constraint_name, unique_constraint_name
                from INFORMATION_SCHEMA.REFERENTIAL_CONSTRAINTS) fkcon
                inner join
            INFORMATION_SCHEMA.KEY_COLUMN_USAGE fkcol
                on fkcon.CONSTRAINT_SCHEMA = fkcol.CONSTRAINT_SCHEMA
                and fkcon.CONSTRAINT_NAME = fkcol.CONSTRAINT_NAME
                inner join
            INFORMATION_SCHEMA.KEY_COLUMN_USAGE pkcol
                on fkcon.UNIQUE_CONSTRAINT_SCHEMA = pkcol.CONSTRAINT_SCHEMA
                and fkcon.UNIQUE_CONSTRAINT_NAME = pkcol.CONSTRAINT_NAME
        where pkcol.TABLE_SCHEMA = 'shop' and pkcol.TABLE_NAME = 'items'
                and pkcol.ORDINAL_POSITION = fkcol.ORDINAL_POSITION
        order by FK_NAME, fkcol.ORDINAL_POSITION""",
    """select
            pkcol.TABLE_SCHEMA AS PK_TABLE_SCHEMA,
            pkcol.TABLE_NAME AS PK_TABLE_NAME,
            pkcol.COLUMN_NAME as PK_COLUMN_NAME,
            fkcol.COLUMN_NAME as FK_COLUMN_NAME,
            fkcol.ORDINAL_POSITION as ORDINAL,
            fkcon.CONSTRAINT_SCHEMA || '_' || 'items' || '_' || pkcol.TABLE_NAME || '_' || fkcon.CONSTRAINT_NAME as FK_NAME
        from
            (select distinct constraint_catalog, constraint_schema, unique_constraint_schema, constraint_name, unique_constraint_name
                from INFORMATION_SCHEMA.REFERENTIAL_CONSTRAINTS) fkcon
                inner join
            INFORMATION_SCHEMA.KEY_COLUMN_USAGE fkcol
                on fkcon.CONSTRAINT_SCHEMA = fkcol.CONSTRAINT_SCHEMA
                and fkcon.CONSTRAINT_NAME = fkcol.CONSTRAINT_NAME
                inner join
            INFORMATION_SCHEMA.KEY_COLUMN_USAGE pkcol
                on fkcon.UNIQUE_CONSTRAINT_SCHEMA = pkcol.CONSTRAINT_SCHEMA
                and fkcon.UNIQUE_CONSTRAINT_NAME = pkcol.CONSTRAINT_NAME
        where fkcol.TABLE_SCHEMA = 'shop' and fkcol.TABLE_NAME = 'items'
                and pkcol.ORDINAL_POSITION = fkcol.ORDINAL_POSITION
        order by FK_NAME, fkcol.ORDINAL_POSITION""",
    'select "id", "name", "price" from "shop"."items" limit 1000',
]

# Superset's connection test and SQL Lab's first queries (its table browsing is SQLAlchemy's
# inspector, checked on its own in catalog_matrix.py).
SUPERSET = [
    "select pg_catalog.version()",
    "select current_schema()",
    "show transaction isolation level",
    "show standard_conforming_strings",
    "SELECT 1",
    "SELECT id, name, price FROM shop.items LIMIT 101",
    "SELECT count(*) AS count_1 FROM (SELECT id FROM shop.items) AS anon_1",
]

# pgjdbc's DatabaseMetaData queries (42.5, from a statement log): the primary-key and index
# queries read pg_index through information_schema._pg_expandarray.
JDBC_META = [
    "SELECT        result.TABLE_CAT,        result.TABLE_SCHEM,        result.TABLE_NAME,        result.COLUMN_NAME,        "
    "result.KEY_SEQ,        result.PK_NAME FROM      (SELECT NULL AS TABLE_CAT, n.nspname AS TABLE_SCHEM,   ct.relname AS TABLE_NAME, "
    "a.attname AS COLUMN_NAME,   (information_schema._pg_expandarray(i.indkey)).n AS KEY_SEQ, ci.relname AS PK_NAME,   "
    "information_schema._pg_expandarray(i.indkey) AS KEYS, a.attnum AS A_ATTNUM FROM pg_catalog.pg_class ct   "
    "JOIN pg_catalog.pg_attribute a ON (ct.oid = a.attrelid)   JOIN pg_catalog.pg_namespace n ON (ct.relnamespace = n.oid)   "
    "JOIN pg_catalog.pg_index i ON ( a.attrelid = i.indrelid)   JOIN pg_catalog.pg_class ci ON (ci.oid = i.indexrelid) "
    "WHERE true  AND n.nspname = 'shop' AND ct.relname = 'items' AND i.indisprimary  ) result where  result.A_ATTNUM = (result.KEYS).x  "
    "ORDER BY result.table_name, result.pk_name, result.key_seq",
    "SELECT a.attname, a.atttypid, atttypmod FROM pg_catalog.pg_class ct   JOIN pg_catalog.pg_attribute a ON (ct.oid = a.attrelid)   "
    "JOIN pg_catalog.pg_namespace n ON (ct.relnamespace = n.oid)   JOIN (SELECT i.indexrelid, i.indrelid, i.indisprimary,              "
    "information_schema._pg_expandarray(i.indkey) AS keys         FROM pg_catalog.pg_index i) i     "
    "ON (a.attnum = (i.keys).x AND a.attrelid = i.indrelid) WHERE true  AND n.nspname = 'shop' AND ct.relname = 'items' "
    "AND i.indisprimary  ORDER BY a.attnum",
    "SELECT * FROM information_schema._pg_expandarray(ARRAY[10, 20, 30])",
    "SELECT (information_schema._pg_expandarray(ARRAY['a', 'b'])).x, (information_schema._pg_expandarray(ARRAY['a', 'b'])).n",
]

TOOLS = {
    "DBeaver": DBEAVER,
    "Metabase": METABASE,
    "Grafana": GRAFANA,
    "DataGrip": DATAGRIP,
    "pgcli": PGCLI,
    "Power BI navigator": POWERBI,
    "Superset": SUPERSET,
    "pgjdbc metadata": JDBC_META,
}

PIPELINED = {
    "Npgsql 4.0 type loading (Power BI)": NPGSQL,
}
