//! Migrating and adopting: operator migrations applied once, `tables adopt` and its dry run,
//! its refusals, the writers-read migration, the CLI, the built-in list and the Citus plan.

use rowguard::catalog::overview::{TableOrigin, tenant_tables};
use rowguard::catalog::{Rule, verify};
use rowguard::domain::Role;
use rowguard::migrate::adopt::{AdoptError, adopt, parse_roles};
use rowguard::migrate::operator::{self, OperatorMigrationError};
use rowguard::roles::BUILT_IN_TENANT_TABLES;
use sqlx::{Executor, PgConnection};

use super::{PROJECTS, adopt_both, app_with_operator_tables, operator_folder, output};
use crate::cli_concurrency::rowguard;
use crate::support::{scratch_dir, spawn_app, spawn_installed_app};

async fn row_security(conn: &mut PgConnection, table: &str) -> (bool, bool) {
    sqlx::query_as("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = to_regclass($1)")
        .bind(table)
        .fetch_one(conn)
        .await
        .expect("pg_class")
}

#[tokio::test]
async fn operator_migrations_apply_once_as_the_owner_and_refuse_an_edited_file() {
    let (app, dir) = app_with_operator_tables().await;
    let mut su = app.superuser_connection().await;
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname IN ('projects', 'tasks', \
         'rowguard_operator_history') ORDER BY relname",
    )
    .fetch_all(&mut su)
    .await
    .expect("owners");
    assert_eq!(owners, vec!["rowguard_owner"; 3]);

    // Again: nothing pending.
    assert!(operator::apply(&app.superuser_url(), &dir).await.expect("again").is_empty());

    // An applied file edited afterwards: refused in one line naming the file and the version.
    std::fs::write(dir.join("V1__projects.sql"), format!("{PROJECTS}\nCREATE INDEX ON projects (tenant_id, name);"))
        .expect("edit V1");
    let err = operator::apply(&app.superuser_url(), &dir).await.expect_err("an edited file is refused");
    assert!(matches!(err, OperatorMigrationError::Changed { version: 1, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("V1__projects.sql") && text.contains("V1__projects was applied"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");

    // An applied file gone, a file numbered below an applied one, a misnamed one.
    std::fs::write(dir.join("V1__projects.sql"), PROJECTS).expect("restore V1");
    std::fs::rename(dir.join("V2__tasks.sql"), dir.join("tasks.sql.bak")).expect("hide V2");
    let err = operator::apply(&app.superuser_url(), &dir).await.expect_err("a missing file is refused");
    assert!(matches!(err, OperatorMigrationError::Missing { version: 2, .. }), "{err}");
    std::fs::rename(dir.join("tasks.sql.bak"), dir.join("V2__tasks.sql")).expect("restore V2");
    std::fs::write(dir.join("V1_5__late.sql"), "SELECT 1").expect("misnamed");
    let err = operator::apply(&app.superuser_url(), &dir).await.expect_err("a misnamed file is refused");
    assert!(matches!(err, OperatorMigrationError::BadName { .. }) && err.to_string().contains("V1_5__late.sql"));
    std::fs::remove_file(dir.join("V1_5__late.sql")).expect("remove");

    // A failing migration applies nothing of its batch.
    std::fs::write(dir.join("V3__notes.sql"), "CREATE TABLE notes (id int);").expect("V3");
    std::fs::write(dir.join("V4__broken.sql"), "CREATE TABLE broken (id int REFERENCES nowhere (id));").expect("V4");
    let err = operator::apply(&app.superuser_url(), &dir).await.expect_err("a broken migration fails");
    // refinery's error on PostgreSQL; on Citus the files run statement by statement and the
    // error names the file.
    assert!(
        matches!(err, OperatorMigrationError::Apply { .. })
            || matches!(&err, OperatorMigrationError::ApplyStatement { file, .. } if file.ends_with("V4__broken.sql")),
        "{err}"
    );
    let notes: bool =
        sqlx::query_scalar("SELECT to_regclass('notes') IS NOT NULL").fetch_one(&mut su).await.expect("notes");
    assert!(!notes, "V3 was rolled back with V4");
}

#[tokio::test]
async fn adopt_guards_both_tables_once_and_a_dry_run_changes_nothing() {
    let (app, _dir) = app_with_operator_tables().await;
    let mut su = app.superuser_connection().await;
    let before = verify(&mut su).await.expect("verify");
    assert!(before.iter().any(|f| f.object == "projects" && f.rule == Rule::RlsNotEnabled), "{before:#?}");

    let dry = adopt(&mut su, "projects", None, None, true).await.expect("dry run");
    assert!(!dry.applied);
    let script = dry.plan.script();
    for expected in [
        "ALTER TABLE \"projects\" ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE \"projects\" FORCE ROW LEVEL SECURITY",
        "CREATE POLICY tenant_isolation ON \"projects\" USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = \
         current_tenant())",
        "EXECUTE FUNCTION audit_row_change('projects', 'id')",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON \"projects\" TO rowguard_app",
        "CREATE INDEX ON \"projects\" (tenant_id, contact_id)",
        "INSERT INTO rowguard_adopted_tables",
    ] {
        assert!(script.contains(expected), "{expected:?} not in\n{script}");
    }
    assert_eq!(row_security(&mut su, "projects").await, (false, false), "a dry run changes nothing");
    let registered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rowguard_adopted_tables").fetch_one(&mut su).await.expect("count");
    assert_eq!(registered, 0);

    adopt_both(&app).await;
    assert_eq!(row_security(&mut su, "projects").await, (true, true));
    for table in ["projects", "tasks"] {
        let again = adopt(&mut su, table, None, None, false).await.expect("adopt again");
        assert!(again.plan.is_empty() && !again.applied, "{table}: {:?}", again.plan.steps);
    }
    let findings = verify(&mut su).await.expect("verify");
    assert!(findings.is_empty(), "{findings:#?}");

    // Role sets: defaults recorded; changed on request (and only then); unknown names refused.
    let listed = tenant_tables(&mut su).await.expect("list");
    let projects = listed.iter().find(|t| t.name == "projects").expect("projects listed");
    let all = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        projects.origin,
        TableOrigin::Adopted {
            read_roles: all(&["owner", "admin", "manager", "member", "auditor"]),
            write_roles: all(&["owner", "admin", "manager", "member"]),
        }
    );
    assert!(projects.rls_enabled && projects.rls_forced && projects.audit == "enabled" && projects.findings.is_empty());
    assert_eq!(listed.iter().find(|t| t.name == "contacts").map(|t| &t.origin), Some(&TableOrigin::BuiltIn));
    let owners_only = parse_roles(&all(&["owner", "admin"])).expect("roles");
    let changed = adopt(&mut su, "tasks", None, Some(owners_only.clone()), false).await.expect("change roles");
    assert_eq!(changed.plan.steps.len(), 1, "{:?}", changed.plan.steps);
    assert_eq!(changed.plan.roles.write, vec![Role::Owner, Role::Admin]);
    let same = adopt(&mut su, "tasks", None, Some(owners_only), false).await.expect("same roles");
    assert!(same.plan.is_empty());
    let unknown = parse_roles(&all(&["owner", "root"])).expect_err("unknown role");
    assert!(unknown.to_string().contains("\"root\""), "{unknown}");
}

#[tokio::test]
async fn adopt_refuses_keys_that_break_invariant_1_and_names_what_to_change() {
    let app = spawn_installed_app().await;
    let mut su = app.superuser_connection().await;
    for statement in [
        "SET ROLE rowguard_owner",
        "CREATE TABLE flat_key (tenant_id uuid NOT NULL, id bigint PRIMARY KEY)",
        "CREATE TABLE parents (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id),
                               CONSTRAINT parents_id_key UNIQUE (id))",
        "CREATE TABLE children (tenant_id uuid NOT NULL, id uuid NOT NULL, parent_id uuid REFERENCES parents (id),
                                PRIMARY KEY (tenant_id, id))",
        "CREATE TABLE loose (tenant_id uuid, id uuid NOT NULL)",
        "CREATE TABLE clients (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id))",
        "CREATE TABLE invoices (tenant_id uuid NOT NULL, id uuid NOT NULL, other_tenant uuid, client_id uuid,
                                PRIMARY KEY (tenant_id, id),
                                CONSTRAINT invoices_client FOREIGN KEY (other_tenant, client_id)
                                    REFERENCES clients (tenant_id, id))",
        "RESET ROLE",
    ] {
        su.execute(statement).await.expect(statement);
    }
    let refusal = |err: AdoptError| match err {
        AdoptError::Refused { problems, .. } => problems.join("\n"),
        other => panic!("expected a refusal, got {other}"),
    };

    let flat = refusal(adopt(&mut su, "flat_key", None, None, false).await.expect_err("flat key"));
    assert!(flat.contains("primary key flat_key_pkey is (id)"), "{flat}");
    assert!(flat.contains("ADD PRIMARY KEY (tenant_id, id)"), "{flat}");

    let children = refusal(adopt(&mut su, "children", None, None, false).await.expect_err("plain foreign key"));
    assert!(children.contains("foreign key children_parent_id_fkey"), "{children}");
    assert!(children.contains("FOREIGN KEY (tenant_id, parent_id) REFERENCES parents (tenant_id, id)"), "{children}");

    let parents = refusal(adopt(&mut su, "parents", None, None, false).await.expect_err("global unique"));
    assert!(parents.contains("unique constraint parents_id_key (id)"), "{parents}");
    assert!(parents.contains("ADD UNIQUE (tenant_id, id)"), "{parents}");
    assert!(parents.contains("children_parent_id_fkey"), "the incoming key too: {parents}");

    // A key that carries some other column where the target has tenant_id: tenant_id takes
    // that column's place, and the lists stay as long as each other.
    let invoices = refusal(adopt(&mut su, "invoices", None, None, false).await.expect_err("wrong tenant column"));
    assert!(invoices.contains("foreign key invoices_client"), "{invoices}");
    assert!(
        invoices.contains("make it FOREIGN KEY (tenant_id, client_id) REFERENCES clients (tenant_id, id)"),
        "{invoices}"
    );
    assert!(!invoices.contains("(tenant_id, other_tenant"), "{invoices}");

    // Every problem at once: a nullable tenant_id does not hide the missing key.
    let loose = refusal(adopt(&mut su, "loose", None, None, false).await.expect_err("nullable tenant"));
    assert!(loose.contains("SET NOT NULL"), "{loose}");
    assert!(loose.contains("loose has no primary key") && loose.contains("ADD PRIMARY KEY (tenant_id, id)"), "{loose}");

    assert!(matches!(adopt(&mut su, "contacts", None, None, false).await, Err(AdoptError::BuiltIn(_))));
    assert!(matches!(adopt(&mut su, "tenants", None, None, false).await, Err(AdoptError::Platform(_))));
    assert!(matches!(adopt(&mut su, "nothing_here", None, None, false).await, Err(AdoptError::NoSuchTable(_))));
    // A refusal changes nothing.
    assert_eq!(row_security(&mut su, "flat_key").await, (false, false));
}

/// Writers must read: the API answers a write with the row written.
#[tokio::test]
async fn adopt_refuses_writers_who_cannot_read_whichever_flag_or_default_sets_them() {
    let (app, _dir) = app_with_operator_tables().await;
    let mut su = app.superuser_connection().await;
    let roles = |names: &[&str]| parse_roles(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("roles");
    let refused = |err: AdoptError| {
        let text = err.to_string();
        match err {
            AdoptError::WritersCannotRead { unreadable, .. } => (unreadable, text),
            other => panic!("expected writers who cannot read, got {other}"),
        }
    };

    // Both flags.
    let err = adopt(&mut su, "projects", Some(roles(&["owner"])), Some(roles(&["owner", "admin"])), false)
        .await
        .expect_err("admin writes but cannot read");
    let (unreadable, text) = refused(err);
    assert_eq!(unreadable, vec![Role::Admin]);
    assert!(text.contains("admin may write its rows but not read them"), "{text}");
    assert!(text.contains("`--read-roles owner,admin`"), "{text}");
    // --read-roles alone, against the default writers.
    let err = adopt(&mut su, "projects", Some(roles(&["owner", "admin"])), None, false).await.expect_err("defaults");
    let (unreadable, text) = refused(err);
    assert_eq!(unreadable, vec![Role::Manager, Role::Member]);
    assert!(text.contains("`--read-roles owner,admin,manager,member`"), "{text}");
    let registered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rowguard_adopted_tables").fetch_one(&mut su).await.expect("count");
    assert_eq!(registered, 0, "a refusal records nothing");

    // --write-roles alone, against the registered readers.
    adopt(&mut su, "projects", Some(roles(&["owner", "admin"])), Some(roles(&["owner"])), false).await.expect("adopt");
    let err = adopt(&mut su, "projects", None, Some(roles(&["owner", "member"])), false).await.expect_err("registry");
    assert_eq!(refused(err).0, vec![Role::Member]);
    // Narrowing the readers below the registered writers, too.
    let err = adopt(&mut su, "projects", Some(roles(&["admin"])), None, false).await.expect_err("registered writers");
    assert_eq!(refused(err).0, vec![Role::Owner]);

    // The registry holds it whoever writes it.
    let check = sqlx::query("UPDATE rowguard_adopted_tables SET write_roles = '{owner,member}'")
        .execute(&mut su)
        .await
        .expect_err("the CHECK refuses");
    assert_eq!(check.as_database_error().and_then(|e| e.code()).as_deref(), Some("23514"), "{check}");
}

/// sql/V20 adds the CHECK to registries that may already break it: such rows are fixed first
/// (the writers are added to the readers), so the migration cannot fail on them.
#[tokio::test]
async fn the_writers_read_migration_widens_the_readers_of_rows_written_before_it() {
    const V20: &str = include_str!("../../../sql/V20__adopted_tables_writers_read.sql");
    let (app, _dir) = app_with_operator_tables().await;
    adopt_both(&app).await;
    let mut su = app.superuser_connection().await;
    // One statement per message (Citus replays a message's whole text on a reference table's
    // placements), as `migrate --dir` sends them there.
    for statement in [
        "ALTER TABLE rowguard_adopted_tables DROP CONSTRAINT rowguard_adopted_tables_writers_read",
        "UPDATE rowguard_adopted_tables SET read_roles = '{auditor,owner}', write_roles = '{owner,member}'
          WHERE table_name = 'projects'",
    ] {
        su.execute(statement).await.expect("a row from before the CHECK");
    }
    for range in rowguard::migrate::statements::split(V20) {
        su.execute(&V20[range]).await.expect("the migration applies");
    }
    let sets: Vec<(String, Vec<String>, Vec<String>)> =
        sqlx::query_as("SELECT table_name, read_roles, write_roles FROM rowguard_adopted_tables ORDER BY 1")
            .fetch_all(&mut su)
            .await
            .expect("registry");
    let all = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        sets,
        vec![
            ("projects".into(), all(&["owner", "member", "auditor"]), all(&["owner", "member"])),
            (
                "tasks".into(),
                all(&["owner", "admin", "manager", "member", "auditor"]),
                all(&["owner", "admin", "manager", "member"])
            ),
        ]
    );
    // The fixed set is stored as adopt stores it: adopting again changes nothing.
    let again = adopt(&mut su, "projects", None, None, false).await.expect("adopt again");
    assert!(again.plan.is_empty(), "{:?}", again.plan.steps);
}

#[tokio::test]
async fn the_built_in_tenant_tables_are_exactly_the_listed_ones() {
    let app = spawn_app().await;
    let mut su = app.superuser_connection().await;
    let listed = tenant_tables(&mut su).await.expect("list");
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, BUILT_IN_TENANT_TABLES, "a built-in tenant table was added: name it in BUILT_IN_TENANT_TABLES");
    assert!(listed.iter().all(|t| t.origin == TableOrigin::BuiltIn && t.findings.is_empty()));
}

/// The binary, as an operator runs it: `migrate --dir`, `tables adopt` (dry run, for real,
/// again, with a bad role), `tables list`.
#[tokio::test]
async fn the_cli_migrates_a_folder_adopts_and_lists() {
    let app = spawn_installed_app().await;
    let dir = operator_folder();
    let data_dir = scratch_dir("cli-adopt");
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rowguard(&app.cli_env(), &data_dir, &args)
    };
    let dir_arg = dir.to_string_lossy().to_string();
    let out = output(run(vec!["migrate".into(), "--dir".into(), dir_arg.clone()])).await;
    assert!(out.contains("operator migrations applied from") && out.contains("V1__projects, V2__tasks"), "{out}");
    assert!(out.contains("tenant tables not adopted yet (unguarded until then): projects, tasks"), "{out}");
    let dry = output(run(vec!["tables".into(), "adopt".into(), "projects".into(), "--dry-run".into()])).await;
    assert!(dry.contains("-- dry run, nothing was changed") && dry.contains("CREATE POLICY tenant_isolation"), "{dry}");
    let adopted = output(run(vec!["tables".into(), "adopt".into(), "projects".into()])).await;
    assert!(adopted.starts_with("adopted projects:"), "{adopted}");
    let again = output(run(vec!["tables".into(), "adopt".into(), "projects".into()])).await;
    assert!(again.starts_with("projects is adopted already; nothing to change"), "{again}");
    let bad = run(vec!["tables".into(), "adopt".into(), "tasks".into(), "--write-roles".into(), "owner,root".into()])
        .output()
        .await
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role \"root\""));
    let list = output(run(vec!["tables".into(), "list".into()])).await;
    let line = |name: &str| list.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default().to_string();
    assert!(
        line("projects").contains("enabled, forced") && line("projects").contains("adopted, read: owner"),
        "{list}"
    );
    assert!(line("contacts").contains("built-in"), "{list}");
    assert!(line("tasks").contains("NOT ADOPTED") && line("tasks").contains("rls-not-enabled"), "{list}");
    // The folder again: nothing pending.
    let out = output(run(vec!["migrate".into(), "--dir".into(), dir_arg])).await;
    assert!(out.contains("operator migrations applied from") && out.contains("none pending"), "{out}");
}

#[tokio::test]
async fn the_citus_plan_distributes_adopted_tables_like_built_in_ones() {
    let (app, _dir) = app_with_operator_tables().await;
    adopt_both(&app).await;
    let mut su = app.superuser_connection().await;
    if app.on_citus() {
        // There `migrate --dir` distributed them as it created them, colocated with the
        // built-in tenant tables; nothing is left for the next `migrate` to place.
        let placed: Vec<(String, bool)> = sqlx::query_as(
            "SELECT logicalrelid::regclass::text, colocationid = (SELECT colocationid FROM pg_dist_partition
                                                                    WHERE logicalrelid = 'contacts'::regclass)
               FROM pg_dist_partition
              WHERE logicalrelid IN ('projects'::regclass, 'tasks'::regclass) AND partmethod = 'h'
                AND column_to_column_name(logicalrelid, partkey) = 'tenant_id'
              ORDER BY 1",
        )
        .fetch_all(&mut su)
        .await
        .expect("placement");
        assert_eq!(placed, vec![("projects".to_string(), true), ("tasks".to_string(), true)]);
        let plan = rowguard::migrate::citus::read_plan(&mut su).await.expect("plan");
        assert!(plan.is_empty(), "{plan:?}");
        return;
    }
    let plan = rowguard::migrate::citus::read_plan(&mut su).await.expect("plan");
    for table in ["projects", "tasks"] {
        assert!(plan.distribute.iter().any(|t| t == table), "{table} is distributed by tenant_id: {plan:?}");
        assert!(!plan.reference.iter().any(|t| t == table), "{plan:?}");
    }
    assert!(plan.reference.iter().any(|t| t == "rowguard_adopted_tables"), "{plan:?}");
}
