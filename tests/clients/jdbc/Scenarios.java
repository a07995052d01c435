// pgjdbc scenarios for pglease's client matrix (tests/clients).
// usage: java Scenarios CASE HOST PORT DBNAME
// HOST is a socket directory (connects over the Unix socket through junixsocket), or, with
// PGSSLMODE=verify-full in the environment (test_matrix's TLS modes), a host name: then the
// connection is TCP+TLS, the certificate checked against the PEM CA in PGSSLROOTCERT and the
// name against HOST, and PGPASSWORD is the password. Prints what the client saw,
// one fact per line, nothing that depends on PIDs or time.
import java.sql.*;
import java.util.Properties;

public class Scenarios {
    static String dir, db;
    static int port;

    static Connection connect(String extra) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", "postgres");
        String sslmode = System.getenv("PGSSLMODE");
        String url;
        if (sslmode == null) {
            p.setProperty("sslmode", "disable");
            p.setProperty("socketFactory", "org.newsclub.net.unix.AFUNIXSocketFactory$FactoryArg");
            p.setProperty("socketFactoryArg", dir + "/.s.PGSQL." + port);
            url = "jdbc:postgresql://localhost:" + port + "/" + db + extra;
        } else if (sslmode.equals("verify-full")) {
            // pgjdbc's default factory (LibPQFactory) reads a PEM root certificate and checks the host name.
            p.setProperty("sslmode", "verify-full");
            p.setProperty("sslrootcert", System.getenv("PGSSLROOTCERT"));
            p.setProperty("password", System.getenv("PGPASSWORD"));
            url = "jdbc:postgresql://" + dir + ":" + port + "/" + db + extra;
        } else {
            throw new IllegalArgumentException("Scenarios knows PGSSLMODE=verify-full only, not " + sslmode);
        }
        return DriverManager.getConnection(url, p);
    }

    static void out(Object... parts) {
        StringBuilder sb = new StringBuilder();
        for (Object o : parts) {
            if (sb.length() > 0) sb.append(' ');
            sb.append(o);
        }
        System.out.println(sb);
    }

    // Where a step ran, for test_matrix to check that shuffle() really moved the client
    // (written to $MATRIX_PIDS, never printed: the output must not depend on PIDs).
    static void noteBackend(int pid) {
        String path = System.getenv("MATRIX_PIDS");
        if (path == null)
            return;
        try (java.io.FileWriter w = new java.io.FileWriter(path, true)) {
            w.write(pid + "\n");
        } catch (java.io.IOException e) {
            throw new RuntimeException(e);
        }
    }

    // Holds a transaction open every other step, so that in transaction mode the
    // other connection's next statement lands on another backend (checked through noteBackend).
    static boolean holding = false;

    static void shuffle(Connection sh, int i) throws SQLException {
        try (Statement s = sh.createStatement()) {
            if (holding) {
                s.execute("commit");
                holding = false;
            } else if (i % 2 == 0) {
                s.execute("begin");
                s.execute("select 1");
                holding = true;
            }
        }
    }

    // prepareThreshold=1: the second execution of a PreparedStatement uses a named server statement.
    // assumeMinServerVersion=9.0: pgjdbc then sends extra_float_digits=3 as a startup parameter;
    // by default it runs SET extra_float_digits = 3 after connecting, which pins the connection to
    // one backend in transaction mode, and the shuffler could never move it.
    static void prepareThreshold() throws SQLException {
        try (Connection c = connect("?prepareThreshold=1&assumeMinServerVersion=9.0");
             Connection sh = connect("?assumeMinServerVersion=9.0")) {
            try (Statement s = c.createStatement()) {
                s.execute("drop table if exists m_jdbc_prep");
                s.execute("create table m_jdbc_prep (id int primary key, v text)");
            }
            PreparedStatement ins = c.prepareStatement("insert into m_jdbc_prep values (?, ?)");
            PreparedStatement sel = c.prepareStatement("select count(*), coalesce(sum(id), 0), pg_backend_pid() from m_jdbc_prep where id <= ?");
            for (int i = 0; i < 40; i++) {
                shuffle(sh, i);
                ins.setInt(1, i);
                ins.setString(2, "v" + i);
                ins.executeUpdate();
                sel.setInt(1, i);
                try (ResultSet rs = sel.executeQuery()) {
                    rs.next();
                    noteBackend(rs.getInt(3));
                    out("step", i, rs.getLong(1), rs.getLong(2));
                }
            }
            if (holding) shuffle(sh, 1);
            // pgjdbc silently re-prepares a statement the backend lost (26000), but only in
            // autocommit: inside transactions a lost statement is an error the test sees.
            c.setAutoCommit(false);
            for (int i = 40; i < 60; i++) {
                shuffle(sh, i);
                ins.setInt(1, i);
                ins.setString(2, "t" + i);
                ins.executeUpdate();
                sel.setInt(1, i);
                try (ResultSet rs = sel.executeQuery()) {
                    rs.next();
                    noteBackend(rs.getInt(3));
                    out("txn step", i, rs.getLong(1), rs.getLong(2));
                }
                c.commit();
            }
            c.setAutoCommit(true);
            if (holding) shuffle(sh, 1);
            out("server prepared", ins.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare());
        }
    }

    // setFetchSize with autocommit off: Execute with a row limit, PortalSuspended between batches.
    static void fetchSize() throws SQLException {
        try (Connection c = connect("")) {
            try (Statement s = c.createStatement()) {
                s.execute("drop table if exists m_jdbc_fetch");
                s.execute("create table m_jdbc_fetch as select g as id, md5(g::text) as h from generate_series(1, 20000) g");
            }
            c.setAutoCommit(false);
            for (int round = 0; round < 2; round++) {
                try (PreparedStatement ps = c.prepareStatement("select id, h from m_jdbc_fetch where id > ? order by id")) {
                    ps.setFetchSize(250);
                    ps.setInt(1, round * 1000);
                    long n = 0, sum = 0;
                    StringBuilder hs = new StringBuilder();
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            n++;
                            sum += rs.getLong(1);
                            if (n % 5000 == 0) hs.append(rs.getString(2)).append(',');
                        }
                    }
                    out("round", round, n, sum, hs);
                }
                c.commit();
            }
            c.setAutoCommit(true);
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select count(*) from m_jdbc_fetch")) {
                rs.next();
                out("after", rs.getLong(1));
            }
        }
    }

    static void batch() throws SQLException {
        try (Connection c = connect("")) {
            try (Statement s = c.createStatement()) {
                s.execute("drop table if exists m_jdbc_batch");
                s.execute("create table m_jdbc_batch (id int primary key, v text, d double precision)");
            }
            for (boolean auto : new boolean[] {true, false}) {
                c.setAutoCommit(auto);
                int base = auto ? 0 : 100000;
                try (PreparedStatement ps = c.prepareStatement("insert into m_jdbc_batch values (?, ?, ?)")) {
                    for (int i = 0; i < 2000; i++) {
                        ps.setInt(1, base + i);
                        ps.setString(2, "row " + i);
                        ps.setDouble(3, i / 4.0);
                        ps.addBatch();
                        if (i % 500 == 499) {
                            int[] r = ps.executeBatch();
                            int t = 0;
                            for (int x : r) t += x;
                            out("batch", auto, i, r.length, t);
                        }
                    }
                }
                if (!auto) c.commit();
            }
            c.setAutoCommit(true);
            // A batch with a duplicate key fails as a whole inside a transaction.
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("insert into m_jdbc_batch values (?, 'dup', 0)")) {
                ps.setInt(1, 500000);
                ps.addBatch();
                ps.setInt(1, 5);
                ps.addBatch();
                ps.executeBatch();
                out("duplicate accepted");
            } catch (BatchUpdateException e) {
                out("batch error", e.getSQLState());
            }
            c.rollback();
            c.setAutoCommit(true);
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("select count(*), sum(id), sum(d) from m_jdbc_batch")) {
                rs.next();
                out("after", rs.getLong(1), rs.getLong(2), rs.getDouble(3));
            }
        }
    }

    // The admin console (database "pglease") over JDBC's extended protocol: unnamed and,
    // with prepareThreshold=1, named server-side statements.
    static void adminConsole() throws SQLException {
        try (Connection c = connect("?prepareThreshold=1")) {
            for (int i = 0; i < 3; i++) {
                try (PreparedStatement ps = c.prepareStatement("SHOW POOLS");
                     ResultSet rs = ps.executeQuery()) {
                    ResultSetMetaData md = rs.getMetaData();
                    StringBuilder cols = new StringBuilder();
                    for (int k = 1; k <= md.getColumnCount(); k++)
                        cols.append(k > 1 ? "," : "").append(md.getColumnName(k));
                    int rows = 0;
                    while (rs.next())
                        if ("app".equals(rs.getString("database")))
                            rows++;
                    out("show pools", i, "columns", cols, "app rows", rows);
                }
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SHOW VERSION")) {
                rs.next();
                out("version starts with pglease:", rs.getString(1).startsWith("pglease "));
            }
            try (Statement s = c.createStatement()) {
                s.executeQuery("SHOW NONSENSE");
                out("unknown command accepted");
            } catch (SQLException e) {
                out("unknown command:", e.getSQLState());
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SHOW STATS")) {
                out("stats has total_xact_count:", rs.findColumn("total_xact_count") > 0);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        dir = args[1];
        port = Integer.parseInt(args[2]);
        db = args[3];
        switch (args[0]) {
            case "prepare-threshold": prepareThreshold(); break;
            case "fetch-size": fetchSize(); break;
            case "batch": batch(); break;
            case "admin-console": adminConsole(); break;
            default: throw new IllegalArgumentException("unknown case " + args[0]);
        }
    }
}
