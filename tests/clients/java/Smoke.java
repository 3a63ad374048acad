import java.sql.*;
public class Smoke {
  public static void main(String[] a) throws Exception {
    try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + System.getenv("PGPORT") + "/lakegate", System.getenv("PGUSER"), System.getenv("PGPASSWORD"))) {
      try (Statement s = c.createStatement()) {
        s.execute("DROP TABLE IF EXISTS j");
        s.execute("CREATE TABLE j (id BIGINT, name TEXT, amount NUMERIC(10,2), at TIMESTAMP)");
      }
      try (PreparedStatement p = c.prepareStatement("INSERT INTO j VALUES (?, ?, ?, ?)")) {
        for (int i = 0; i < 7; i++) {
          p.setLong(1, i); p.setString(2, "n" + i); p.setBigDecimal(3, new java.math.BigDecimal("1.50")); p.setTimestamp(4, Timestamp.valueOf("2024-01-02 03:04:05"));
          p.executeUpdate();
        }
      }
      try (PreparedStatement p = c.prepareStatement("SELECT id, name, amount, at FROM j WHERE id >= ? ORDER BY id")) {
        for (int k = 0; k < 7; k++) {
          p.setLong(1, 3);
          try (ResultSet r = p.executeQuery()) { int n = 0; while (r.next()) n++; if (n != 4) throw new AssertionError("rows " + n); }
        }
      }
      c.setAutoCommit(false);
      try (Statement s = c.createStatement()) {
        s.setFetchSize(2);
        try (ResultSet r = s.executeQuery("SELECT * FROM demo.orders")) { int n = 0; while (r.next()) n++; if (n != 800) throw new AssertionError("fetched " + n); }
      }
      c.commit();
      try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT version(), current_user, now()")) { r.next(); if (!r.getString(1).startsWith("PostgreSQL 15.")) throw new AssertionError(r.getString(1)); }
    }
  }
}
