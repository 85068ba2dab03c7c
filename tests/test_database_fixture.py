import psycopg

from tests.fix_database import DatabaseServer


def test_copy_rows_into_a_table_and_read_them_back(database_url: str) -> None:
    rows = [(1, "page_view", {"a": 1}), (2, "click", {"b": [1, 2]}), (3, "scroll\ttab", {})]
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, kind text, payload jsonb)")
        with conn.cursor() as cur, cur.copy("COPY t (id, kind, payload) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((row[0], row[1], psycopg.types.json.Jsonb(row[2])))
        got = conn.execute("SELECT id, kind, payload FROM t ORDER BY id").fetchall()
    assert got == rows


def test_each_test_gets_an_empty_database(database_url: str, database_server: DatabaseServer) -> None:
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
    print(f"database from: {database_server.how}")
