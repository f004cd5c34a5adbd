//! Where the statements of an operator's SQL file begin and end, for the one backend that has
//! to treat some of them apart (Citus: `migrate::citus::apply_operator_migrations`). Not a
//! parser: a lexer that knows PostgreSQL's quoting well enough to find the semicolons between
//! statements — string constants (`'…'`, `E'…'`), quoted identifiers, dollar quoting, line and
//! nested block comments — and the one place where a semicolon does not end a statement
//! outside them, the SQL-standard body of a function (`BEGIN ATOMIC … END`, whose statements
//! may hold `CASE … END`). pg_query would parse for real but builds a C library into every
//! build for this one use; all that is asked here is where statements end.

use std::ops::Range;

/// The byte ranges of the top-level statements of `sql`, each without its terminating `;`,
/// blank ones (only spaces and comments) left out.
pub fn split(sql: &str) -> Vec<Range<usize>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    // Inside `BEGIN ATOMIC`: how many of it and of `CASE` are open (each closed by `END`).
    let mut atomic = 0usize;
    let mut previous_word = "";
    while i < bytes.len() {
        i = match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |n| i + n + 1)
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => skip_block_comment(bytes, i),
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !(i > 1 && is_word(bytes[i - 2]));
                skip_quoted(bytes, i, b'\'', escapes)
            }
            b'"' => skip_quoted(bytes, i, b'"', false),
            b'$' if i == 0 || !is_word(bytes[i - 1]) => match dollar_tag(bytes, i) {
                Some(tag) => {
                    let body = i + tag.len();
                    find(&bytes[body..], tag).map_or(bytes.len(), |n| body + n + tag.len())
                }
                None => i + 1,
            },
            b';' if atomic == 0 => {
                push(sql, start..i, &mut out);
                start = i + 1;
                i + 1
            }
            b if is_word(b) && (i == 0 || !is_word(bytes[i - 1])) => {
                let end = bytes[i..].iter().position(|&b| !is_word(b)).map_or(bytes.len(), |n| i + n);
                let word = &sql[i..end];
                let opens = (word.eq_ignore_ascii_case("ATOMIC") && previous_word.eq_ignore_ascii_case("BEGIN"))
                    || (atomic > 0 && word.eq_ignore_ascii_case("CASE"));
                if opens {
                    atomic += 1;
                } else if atomic > 0 && word.eq_ignore_ascii_case("END") {
                    atomic -= 1;
                }
                previous_word = word;
                end
            }
            _ => i + 1,
        };
    }
    push(sql, start..bytes.len(), &mut out);
    out
}

/// Whether the statement creates a (not temporary) table, and so must be placed on Citus
/// before the next statement may name it: `CREATE [UNLOGGED] TABLE`, not `CREATE TEMP TABLE`
/// and not `… PARTITION OF …` (Citus places a partition like its parent by itself).
pub fn creates_table(statement: &str) -> bool {
    let words: Vec<String> = code_words(statement).map(str::to_ascii_uppercase).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let creates = matches!(words[..], ["CREATE", "TABLE", ..] | ["CREATE", "UNLOGGED", "TABLE", ..]);
    creates && !words.windows(2).any(|w| w == ["PARTITION", "OF"])
}

/// Whether the statement is `ALTER TABLE … ADD [CONSTRAINT name] FOREIGN KEY …` and nothing
/// else (no second subcommand: no comma outside parentheses).
pub fn adds_only_a_foreign_key(statement: &str) -> bool {
    let words: Vec<String> = code_words(statement).take(12).map(str::to_ascii_uppercase).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let Some(add) = words.iter().position(|w| *w == "ADD") else { return false };
    let foreign = match words.get(add + 1) {
        Some(&"CONSTRAINT") => add + 3,
        _ => add + 1,
    };
    let mut depth = 0i32;
    let one_subcommand = code(statement).bytes().all(|b| {
        match b {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => return false,
            _ => {}
        }
        true
    });
    matches!(words[..], ["ALTER", "TABLE", ..])
        && words.get(foreign..foreign + 2) == Some(&["FOREIGN", "KEY"][..])
        && one_subcommand
}

/// The first word of a statement that ends or changes the transaction, or changes who runs the
/// rest (`COMMIT`, `SET ROLE`, …): refused in an operator's migration on Citus, which runs the
/// files in one transaction as the owner role (`SET LOCAL ROLE`).
pub fn controls_the_session(statement: &str) -> bool {
    let words: Vec<String> = code_words(statement).take(3).map(str::to_ascii_uppercase).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        words[..],
        ["BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE" | "PREPARE", ..]
            | ["SET" | "RESET", "ROLE", ..]
            | ["SET", "SESSION", "AUTHORIZATION"]
            | ["SET", "LOCAL", "ROLE"]
            | ["RESET", "SESSION", ..]
    )
}

/// A statement's text after any leading comments.
fn code(statement: &str) -> &str {
    let mut rest = statement.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if rest.starts_with("/*") {
            rest = rest[skip_block_comment(rest.as_bytes(), 0).min(rest.len())..].trim_start();
        } else {
            return rest;
        }
    }
}

/// The words of a statement's code, after any leading comments.
fn code_words(statement: &str) -> impl Iterator<Item = &str> {
    code(statement).split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

fn push(sql: &str, range: Range<usize>, out: &mut Vec<Range<usize>>) {
    if code_words(&sql[range.clone()]).next().is_some() {
        out.push(range);
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Past a `/* … */` comment starting at `i` (PostgreSQL nests them).
fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Past a quoted run opened by `quote` at `i`; a doubled quote stays inside, as does a
/// backslash-escaped one in an `E'…'` constant.
fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    i += 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// `$$` or `$tag$` at `i` (a tag: a letter or `_`, then letters, digits, `_`); not `$1`.
fn dollar_tag(bytes: &[u8], i: usize) -> Option<&[u8]> {
    let rest = &bytes[i + 1..];
    let len = rest.iter().position(|&b| !is_word(b))?;
    if rest[len] != b'$' || rest.first().is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(&bytes[i..i + len + 2])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(sql: &str) -> Vec<&str> {
        split(sql).into_iter().map(|r| sql[r].trim()).collect()
    }

    #[test]
    fn semicolons_inside_quotes_comments_and_bodies_do_not_split() {
        let sql = "CREATE TABLE a (x text DEFAULT 'a;b''c;');\n\
                   -- a comment; with a semicolon\n\
                   /* block; /* nested; */ still; */ CREATE TABLE \"odd;name\" (y int);\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n\
                   DO $body$ BEGIN PERFORM 1; END $body$;\n\
                   SELECT E'it\\'s; fine', $1;\n\
                   ;  -- nothing\n\
                   CREATE FUNCTION g(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC\n\
                     SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; SELECT 2;\n\
                   END;\n\
                   CREATE TABLE after_atomic (x int)";
        let got = statements(sql);
        assert_eq!(got.len(), 7, "{got:#?}");
        assert!(got[0].starts_with("CREATE TABLE a") && got[0].ends_with("'a;b''c;')"));
        assert!(got[1].ends_with("CREATE TABLE \"odd;name\" (y int)"), "{}", got[1]);
        assert!(got[2].ends_with("$$ SELECT 1; $$"));
        assert!(got[3].ends_with("END $body$"));
        assert!(got[4].starts_with("SELECT E'it\\'s; fine'"));
        assert!(got[5].contains("CREATE FUNCTION g") && got[5].ends_with("SELECT 2;\nEND"), "{}", got[5]);
        assert_eq!(got[6], "CREATE TABLE after_atomic (x int)");
    }

    #[test]
    fn an_unterminated_quote_runs_to_the_end_as_one_statement() {
        assert_eq!(statements("SELECT 1; SELECT 'open; CREATE TABLE x (y int)").len(), 2);
    }

    #[test]
    fn only_permanent_non_partition_tables_count_as_created_tables() {
        assert!(creates_table("create table t (tenant_id uuid)"));
        assert!(creates_table("-- why\n/* and */ CREATE UNLOGGED TABLE t (x int)"));
        assert!(!creates_table("CREATE TEMP TABLE t (x int)"));
        assert!(!creates_table("CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)"));
        assert!(!creates_table("CREATE INDEX ON t (x)"));
        assert!(!creates_table("ALTER TABLE t ADD COLUMN y int"));
        assert!(!creates_table("CREATE TABLE p2 PARTITION\nOF p FOR VALUES IN (2)"));
    }

    #[test]
    fn only_a_lone_foreign_key_counts_as_one() {
        assert!(adds_only_a_foreign_key(
            "ALTER TABLE public.t ADD FOREIGN KEY (tenant_id, x) REFERENCES u (tenant_id, id) ON DELETE SET NULL (x)"
        ));
        assert!(adds_only_a_foreign_key("alter table t add constraint k foreign key (tenant_id, x) references u"));
        assert!(adds_only_a_foreign_key(
            "-- keys last, so in any order\nALTER TABLE t ADD FOREIGN KEY (tenant_id, x) REFERENCES u"
        ));
        assert!(!adds_only_a_foreign_key(
            "ALTER TABLE t ADD COLUMN x uuid, ADD FOREIGN KEY (tenant_id, x) REFERENCES u"
        ));
        assert!(!adds_only_a_foreign_key("ALTER TABLE t ENABLE ROW LEVEL SECURITY"));
        assert!(!adds_only_a_foreign_key("CREATE INDEX ON t (x)"));
    }

    #[test]
    fn transaction_control_and_role_changes_are_told_apart() {
        for s in
            ["COMMIT", "end", "ROLLBACK", "BEGIN", "SET ROLE postgres", "RESET ROLE", "SET SESSION AUTHORIZATION x"]
        {
            assert!(controls_the_session(s), "{s}");
        }
        for s in
            ["CREATE TABLE t (x int)", "SET search_path = public", "SELECT 1", "CREATE FUNCTION f() BEGIN ATOMIC END"]
        {
            assert!(!controls_the_session(s), "{s}");
        }
    }
}
