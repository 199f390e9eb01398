// The client matrix's pgjdbc program (Debian's libpostgresql-jdbc-java, with
// Debian's HikariCP as the pool): prepared statements past pgjdbc's
// prepareThreshold (server-side named statements), setBigDecimal and
// setLong binds, batches, savepoints, DatabaseMetaData introspection
// (getPrimaryKeys, getColumns, getIndexInfo) and the pool's reset of
// isolation and read-only on return.
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;

import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class PgjdbcApp {
    interface Body { Object run(Connection c) throws Exception; }

    static final List<String> ops = new ArrayList<>();
    static HikariDataSource ds;
    static final long T = Long.parseLong(env("PGT_TENANT", "42")), O = Long.parseLong(env("PGT_OTHER", "7"));

    static String env(String k, String d) { String v = System.getenv(k); return v == null || v.isEmpty() ? d : v; }

    static String json(Object o) {
        if (o == null) return "null";
        if (o instanceof Number || o instanceof Boolean) return o.toString();
        if (o instanceof Map) {
            StringBuilder b = new StringBuilder("{");
            for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) {
                if (b.length() > 1) b.append(',');
                b.append(json(e.getKey().toString())).append(':').append(json(e.getValue()));
            }
            return b.append('}').toString();
        }
        if (o instanceof List) {
            StringBuilder b = new StringBuilder("[");
            for (Object x : (List<?>) o) { if (b.length() > 1) b.append(','); b.append(json(x)); }
            return b.append(']').toString();
        }
        String s = o.toString();
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') b.append('\\').append(ch);
            else if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
            else b.append(ch);
        }
        return b.append('"').toString();
    }

    static List<Object> rows(ResultSet rs) throws SQLException {
        List<Object> out = new ArrayList<>();
        ResultSetMetaData md = rs.getMetaData();
        while (rs.next()) {
            Map<String, Object> m = new TreeMap<>();
            for (int i = 1; i <= md.getColumnCount(); i++) {
                Object v = rs.getObject(i);
                m.put(md.getColumnLabel(i).toLowerCase(), v instanceof BigDecimal ? ((BigDecimal) v).stripTrailingZeros().toPlainString() : v == null ? null : v instanceof Number ? v : v.toString());
            }
            out.add(m);
        }
        return out;
    }

    static Object op(String name, String kind, Body body) { return op(name, kind, "", body); }

    static Object op(String name, String kind, String sql, Body body) {
        Map<String, Object> rec = new LinkedHashMap<>();
        rec.put("name", name); rec.put("kind", kind); rec.put("sql", sql);
        Object result = null;
        try (Connection c = ds == null ? null : ds.getConnection()) {
            if (c != null) try (Statement st = c.createStatement()) { st.execute("SELECT 'pgtenant-op:" + name + "'"); } catch (SQLException e) { System.err.println("marker " + name + ": " + e); }
            result = body.run(c);
            rec.put("ok", true); rec.put("sqlstate", ""); rec.put("error", ""); rec.put("rows", result);
        } catch (Exception e) {
            String state = "";
            for (Throwable t = e; t != null; t = t.getCause()) if (t instanceof SQLException && ((SQLException) t).getSQLState() != null) { state = ((SQLException) t).getSQLState(); break; }
            rec.put("ok", false); rec.put("sqlstate", state); rec.put("error", String.valueOf(e.getMessage())); rec.put("rows", null);
            System.err.println("op " + name + ": " + e);
        }
        ops.add(json(rec));
        return result;
    }

    static List<Object> query(Connection c, String sql, Object... args) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) ps.setObject(i + 1, args[i]);
            if (ps.execute()) try (ResultSet rs = ps.getResultSet()) { return rows(rs); }
            return List.of(ps.getUpdateCount());
        }
    }

    public static void main(String[] a) throws Exception {
        op("connect", "app", c -> {
            HikariConfig hc = new HikariConfig();
            hc.setJdbcUrl("jdbc:postgresql://" + env("PGT_HOST", "127.0.0.1") + ":" + env("PGT_PORT", "5432") + "/" + env("PGT_DB", "app")
                + "?sslmode=disable&ApplicationName=clients-pgjdbc");
            hc.setUsername(env("PGT_USER", "tester"));
            hc.setPassword(env("PGT_PASSWORD", ""));
            hc.setMaximumPoolSize(2);
            hc.setMinimumIdle(1);
            ds = new HikariDataSource(hc);
            try (Connection x = ds.getConnection()) { return query(x, "SELECT 1 AS one"); }
        });
        if (ds == null) { dump(); return; }
        op("read.scoped", "app", c -> query(c, "SELECT id, account_id, total, note FROM orders WHERE account_id = ? ORDER BY id", T));
        Object ins = op("crud.insert", "app", c -> query(c, "INSERT INTO orders (account_id, total, note) VALUES (?, ?, ?) RETURNING id, account_id", T, new BigDecimal("12.5"), "pgjdbc"));
        long oid = ins == null ? 1 : ((Number) ((Map<?, ?>) ((List<?>) ins).get(0)).get("id")).longValue();
        op("crud.update", "app", c -> query(c, "UPDATE orders SET note = ? WHERE account_id = ? AND id = ? RETURNING id, account_id, note", "pgjdbc updated", T, oid));
        op("prepared.threshold", "app", c -> {
            List<Object> out = new ArrayList<>();
            try (PreparedStatement ps = c.prepareStatement("SELECT id, account_id FROM orders WHERE account_id = ? AND id = ?")) {
                for (int i = 0; i < 7; i++) { // prepareThreshold=5: named server-side statement from the 5th run
                    ps.setLong(1, T); ps.setLong(2, i % 2 == 0 ? 1 : oid);
                    try (ResultSet rs = ps.executeQuery()) { out.addAll(rows(rs)); }
                }
            }
            return out;
        });
        op("bind.setBigDecimal", "app", "SELECT id, account_id FROM orders WHERE account_id = ? ORDER BY id -- setBigDecimal(1, 42) (numeric)", c -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT id, account_id FROM orders WHERE account_id = ? ORDER BY id")) {
                ps.setBigDecimal(1, new BigDecimal(T));
                try (ResultSet rs = ps.executeQuery()) { return rows(rs); }
            }
        });
        op("batch.insert", "app", c -> {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (?, ?, ?, ?)")) {
                for (String sku : new String[]{"SKU-J1", "SKU-J2"}) { ps.setLong(1, T); ps.setLong(2, oid); ps.setString(3, sku); ps.setInt(4, 1); ps.addBatch(); }
                return List.of(ps.executeBatch().length);
            }
        });
        op("tx.savepoint", "app", c -> {
            c.setAutoCommit(false);
            try {
                List<Object> out = new ArrayList<>(query(c, "INSERT INTO customers (account_id, name) VALUES (?, ?) RETURNING id, account_id", T, "pgjdbc customer"));
                Savepoint sp = c.setSavepoint();
                try { query(c, "INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (?, ?, 'BAD', -1)", T, oid); }
                catch (SQLException e) { c.rollback(sp); }
                out.addAll(query(c, "INSERT INTO line_items (account_id, order_id, sku, qty) VALUES (?, ?, 'SKU-PJ', 2) RETURNING id, account_id", T, oid));
                c.commit();
                return out;
            } catch (Exception e) { c.rollback(); throw e; }
        });
        op("pool.isolation_readonly_reset", "app", c -> {
            c.setTransactionIsolation(Connection.TRANSACTION_REPEATABLE_READ);
            c.setReadOnly(true);
            List<Object> out = query(c, "SELECT count(*) AS n FROM orders WHERE account_id = ?", T);
            return out; // HikariCP resets isolation and read-only when the connection returns
        });
        op("pool.after_reset", "app", c -> query(c, "SELECT current_setting('transaction_isolation') AS iso, count(*) AS n FROM orders WHERE account_id = ?", T));
        op("meta.getPrimaryKeys", "app", c -> rows(c.getMetaData().getPrimaryKeys(null, "public", "orders")));
        op("meta.getColumns", "app", c -> {
            List<Object> out = new ArrayList<>();
            try (ResultSet rs = c.getMetaData().getColumns(null, "public", "orders", null)) { while (rs.next()) out.add(rs.getString("COLUMN_NAME")); }
            return out;
        });
        op("meta.getIndexInfo", "app", c -> {
            List<Object> out = new ArrayList<>();
            try (ResultSet rs = c.getMetaData().getIndexInfo(null, "public", "line_items", false, false)) { while (rs.next()) out.add(rs.getString("INDEX_NAME") + "." + rs.getString("COLUMN_NAME")); }
            Collections.sort((List) out);
            return out;
        });
        op("meta.getTables", "app", c -> {
            List<Object> out = new ArrayList<>();
            try (ResultSet rs = c.getMetaData().getTables(null, "public", "%", new String[]{"TABLE"})) { while (rs.next()) out.add(rs.getString("TABLE_NAME")); }
            return out;
        });
        op("assoc.join", "app", c -> query(c, "SELECT o.id, o.account_id, l.sku FROM orders o JOIN line_items l ON l.account_id = o.account_id AND l.order_id = o.id WHERE o.account_id = ? ORDER BY o.id, l.id", T));
        op("crud.delete", "app", c -> query(c, "DELETE FROM line_items WHERE account_id = ? AND order_id = ? RETURNING id, account_id", T, oid));
        op("unpinned.update_by_id", "unpinned", c -> query(c, "UPDATE orders SET note = 'by id' WHERE id = ? RETURNING id, account_id, note", oid));
        op("unscoped.select", "unscoped", c -> query(c, "SELECT id, account_id FROM orders ORDER BY id"));
        op("cross.select", "cross", c -> query(c, "SELECT id, account_id FROM orders WHERE account_id = ?", O));
        op("cross.update", "cross", c -> query(c, "UPDATE orders SET note = 'x' WHERE account_id = ?", O));
        op("cross.insert", "cross", c -> query(c, "INSERT INTO orders (id, account_id, total) VALUES (990031, ?, 1)", O));
        ds.close();
        dump();
    }

    static void dump() {
        String version = org.postgresql.util.DriverInfo.DRIVER_VERSION;
        System.out.println("{\"client\":\"pgjdbc\",\"version\":" + json(version) + ",\"ops\":[" + String.join(",", ops) + "]}");
    }
}
