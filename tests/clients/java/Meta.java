import java.io.*;
import java.sql.*;
import java.util.*;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

/**
 * What pgjdbc reports of the shop schema (tests/clients/catalog_matrix.py creates it), printed as
 * lines the matrix compares between PostgreSQL and Lakegate: DatabaseMetaData (catalogs, schemas,
 * tables, columns, keys, indexes, type info), ResultSetMetaData, a PreparedStatement run past the
 * server-prepare threshold, a batch, setFetchSize with autocommit off, and CopyManager both ways.
 *
 * Usage: java Meta JDBC_URL USER PASSWORD
 */
public class Meta {
  static final PrintStream out = System.out;

  static String cell(Object o) {
    if (o == null) return "NULL";
    if (o instanceof byte[]) return "bytes" + Arrays.toString((byte[]) o);
    if (o instanceof Array) {
      try { return Arrays.deepToString((Object[]) ((Array) o).getArray()); } catch (SQLException e) { return "array?"; }
    }
    return o.toString();
  }

  /** The rows of `rs`, only the named columns, in order (null = every column). */
  static List<String> rows(ResultSet rs, String... cols) throws SQLException {
    List<String> lines = new ArrayList<>();
    ResultSetMetaData md = rs.getMetaData();
    while (rs.next()) {
      StringBuilder b = new StringBuilder();
      if (cols.length == 0) {
        for (int i = 1; i <= md.getColumnCount(); i++) b.append(i > 1 ? "|" : "").append(cell(rs.getObject(i)));
      } else {
        for (int i = 0; i < cols.length; i++) b.append(i > 0 ? "|" : "").append(cell(rs.getObject(cols[i])));
      }
      lines.add(b.toString());
    }
    rs.close();
    return lines;
  }

  static void section(String name, List<String> lines) {
    out.println("## " + name);
    for (String l : lines) out.println(l);
  }

  public static void main(String[] a) throws Exception {
    Properties props = new Properties();
    props.setProperty("user", a[1]);
    props.setProperty("password", a[2]);
    try (Connection c = DriverManager.getConnection(a[0], props)) {
      DatabaseMetaData md = c.getMetaData();
      out.println("## product " + md.getDatabaseProductName() + " " + md.getDatabaseMajorVersion());
      out.println("## identifiers " + md.getIdentifierQuoteString() + " " + md.storesLowerCaseIdentifiers());
      section("catalogs", List.of(String.valueOf(rows(md.getCatalogs()).size())));
      List<String> schemas = rows(md.getSchemas(), "TABLE_SCHEM");
      section("schemas", List.of(schemas.contains("shop") + " " + schemas.contains("public")
          + " " + schemas.contains("pg_catalog") + " " + schemas.contains("information_schema")));
      section("schemas like", rows(md.getSchemas(null, "sh%"), "TABLE_SCHEM"));
      section("table types", rows(md.getTableTypes()).contains("TABLE") ? List.of("TABLE ok") : List.of("no TABLE"));
      section("tables", rows(md.getTables(null, "shop", "%", null),
          "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE", "REMARKS"));
      section("tables TABLE", rows(md.getTables(null, "shop", "%", new String[] {"TABLE"}),
          "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE"));
      section("tables VIEW", rows(md.getTables(null, "sh_p", "ch%", new String[] {"VIEW"}),
          "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE"));
      section("columns", rows(md.getColumns(null, "shop", "items", "%"),
          "TABLE_NAME", "COLUMN_NAME", "DATA_TYPE", "TYPE_NAME", "COLUMN_SIZE", "DECIMAL_DIGITS",
          "NUM_PREC_RADIX", "NULLABLE", "REMARKS", "COLUMN_DEF", "CHAR_OCTET_LENGTH",
          "ORDINAL_POSITION", "IS_NULLABLE", "IS_AUTOINCREMENT", "IS_GENERATEDCOLUMN"));
      section("view columns", rows(md.getColumns(null, "shop", "cheap", null),
          "COLUMN_NAME", "DATA_TYPE", "TYPE_NAME", "ORDINAL_POSITION"));
      section("primary keys", rows(md.getPrimaryKeys(null, "shop", "items")));
      section("imported keys", rows(md.getImportedKeys(null, "shop", "items")));
      section("exported keys", rows(md.getExportedKeys(null, "shop", "items")));
      section("index info", rows(md.getIndexInfo(null, "shop", "items", false, true)));
      section("best row id", rows(md.getBestRowIdentifier(null, "shop", "items", DatabaseMetaData.bestRowSession, true)));
      section("table privileges", List.of(String.valueOf(
          rows(md.getTablePrivileges(null, "shop", "items"), "PRIVILEGE").contains("SELECT"))));
      Set<String> wanted = Set.of("int2", "int4", "int8", "text", "varchar", "numeric", "bool",
          "float4", "float8", "date", "timestamp", "timestamptz", "bytea", "uuid", "json", "jsonb");
      List<String> types = new ArrayList<>();
      for (String r : rows(md.getTypeInfo(), "TYPE_NAME", "DATA_TYPE", "PRECISION", "NULLABLE",
          "CASE_SENSITIVE", "SEARCHABLE", "UNSIGNED_ATTRIBUTE", "AUTO_INCREMENT")) {
        if (wanted.contains(r.split("\\|")[0])) types.add(r);
      }
      Collections.sort(types);
      section("type info", types);

      try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT * FROM shop.items ORDER BY id")) {
        ResultSetMetaData rm = r.getMetaData();
        List<String> lines = new ArrayList<>();
        for (int i = 1; i <= rm.getColumnCount(); i++) {
          lines.add(rm.getColumnName(i) + "|" + rm.getColumnType(i) + "|" + rm.getColumnTypeName(i)
              + "|" + rm.getPrecision(i) + "|" + rm.getScale(i) + "|" + rm.getColumnClassName(i)
              + "|" + rm.getColumnDisplaySize(i) + "|" + rm.isNullable(i) + "|" + rm.getTableName(i)
              + "|" + rm.getSchemaName(i) + "|" + rm.isAutoIncrement(i));
        }
        section("result metadata", lines);
        List<String> values = new ArrayList<>();
        while (r.next()) {
          StringBuilder b = new StringBuilder();
          for (int i = 1; i <= rm.getColumnCount(); i++) b.append(i > 1 ? "|" : "").append(r.getString(i));
          values.add(b.toString());
        }
        section("values", values);
      }

      // Past prepareThreshold (5) pgjdbc switches to a named server-side statement and binary results.
      List<String> prepared = new ArrayList<>();
      try (PreparedStatement p = c.prepareStatement(
          "SELECT id, name, price, created, created_tz, day, ok, ratio FROM shop.items WHERE id >= ? AND qty IS DISTINCT FROM ? ORDER BY id")) {
        for (int k = 0; k < 8; k++) {
          p.setLong(1, 1 + k % 3);
          p.setInt(2, 3);
          try (ResultSet r = p.executeQuery()) {
            while (r.next()) {
              prepared.add(k + ":" + r.getLong(1) + "|" + r.getString(2) + "|" + r.getBigDecimal(3) + "|"
                  + r.getTimestamp(4) + "|" + (r.getTimestamp(5) == null ? null : r.getTimestamp(5).getTime())
                  + "|" + r.getDate(6) + "|" + r.getObject(7) + "|" + r.getObject(8));
            }
          }
        }
      }
      section("prepared past threshold", prepared);

      try (Statement s = c.createStatement()) {
        s.execute("DROP TABLE IF EXISTS shop.jdbc_batch");
        s.execute("CREATE TABLE shop.jdbc_batch (id BIGINT, label TEXT)");
      }
      try (PreparedStatement p = c.prepareStatement("INSERT INTO shop.jdbc_batch VALUES (?, ?)")) {
        for (int i = 0; i < 25; i++) {
          p.setLong(1, i);
          p.setString(2, "b" + i);
          p.addBatch();
        }
        int[] counts = p.executeBatch();
        int total = 0;
        for (int n : counts) total += n == Statement.SUCCESS_NO_INFO ? 1 : n;
        section("batch", List.of(counts.length + " " + total));
      }
      try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT count(*), sum(id) FROM shop.jdbc_batch")) {
        section("batch rows", rows(r));
      }

      c.setAutoCommit(false);
      try (Statement s = c.createStatement()) {
        s.setFetchSize(100);
        long n = 0, sum = 0;
        try (ResultSet r = s.executeQuery("SELECT n FROM shop.many ORDER BY n")) {
          while (r.next()) { n++; sum += r.getLong(1); }
        }
        section("fetch size", List.of(n + " " + sum));
      }
      c.commit();
      c.setAutoCommit(true);

      CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
      StringWriter w = new StringWriter();
      long copied = cm.copyOut("COPY (SELECT id, name, price FROM shop.items ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)", w);
      section("copy out", List.of(copied + "", w.toString().replace("\n", "\\n")));
      long in = cm.copyIn("COPY shop.jdbc_batch FROM STDIN WITH (FORMAT csv)",
          new StringReader("100,copied\n101,\"with,comma\"\n102,\n"));
      try (Statement s = c.createStatement(); ResultSet r = s.executeQuery(
          "SELECT id, label, label IS NULL FROM shop.jdbc_batch WHERE id >= 100 ORDER BY id")) {
        section("copy in", List.of(in + "", String.join(";", rows(r))));
      }

      try (Statement s = c.createStatement()) {
        s.executeQuery("SELECT * FROM shop.nope");
        section("error", List.of("none"));
      } catch (SQLException e) {
        section("error", List.of(e.getSQLState()));
      }
      try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT 1")) {
        section("after error", rows(r));
      }
    }
  }
}
