//! The permission matrix, cell by cell over HTTP: one tenant with a user of every role, and
//! for every permission the requests that need it. A role that holds the permission gets a
//! 2xx for each; a role that lacks it gets 403 `forbidden` for each. docs/api.md prints the
//! same matrix, checked here too.

use axum::http::{Method, StatusCode};
use rowguard::domain::permissions::markdown_table;
use rowguard::domain::{Permission, Role};
use serde_json::{Value, json};

use crate::support::{TestApp, TestTenant, spawn_app};

#[test]
fn the_readme_prints_the_permission_matrix_of_the_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).expect("docs/api.md");
    let table = markdown_table();
    assert!(
        readme.contains(&table),
        "docs/api.md's permission table differs from src/domain/permissions.rs; it should read:\n{table}"
    );
}

struct World {
    app: TestApp,
    tenant: TestTenant,
    owner: String,
    contact: String,
    organization: String,
    deal: String,
}

impl World {
    async fn post(&self, path: &str, body: Value) -> String {
        let r = self.app.call_as(&self.owner, "alpha", Method::POST, path, Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }

    async fn fresh_member(&self) -> String {
        let email = format!("m-{}@alpha.test", uuid::Uuid::now_v7().simple());
        self.post("/v1/users", json!({"email": email, "password": "long enough", "role": "member"})).await
    }

    async fn fresh_contact(&self) -> String {
        self.post("/v1/contacts", json!({"name": "Fresh", "email": "f@alpha.io"})).await
    }

    /// The requests that need `permission`, with their targets made fresh by the owner (so a
    /// DELETE always has something to delete). None: no route needs it yet.
    async fn requests(&self, permission: Permission) -> Option<Vec<(Method, String, Option<Value>)>> {
        let new_user = |role: &str| {
            let email = format!("u-{}@alpha.test", uuid::Uuid::now_v7().simple());
            Some(json!({"email": email, "password": "long enough", "role": role}))
        };
        let deal = json!({"title": "D", "contact_id": self.contact, "amount": "5", "currency": "EUR"});
        Some(match permission {
            Permission::ReadUsers => vec![
                (Method::GET, "/v1/users".into(), None),
                (Method::GET, format!("/v1/users/{}", self.fresh_member().await), None),
            ],
            Permission::ManageUsers => vec![
                (Method::POST, "/v1/users".into(), new_user("member")),
                (Method::PATCH, format!("/v1/users/{}", self.fresh_member().await), Some(json!({"role": "manager"}))),
                (Method::DELETE, format!("/v1/users/{}", self.fresh_member().await), None),
            ],
            Permission::ManageOwners => vec![
                (Method::POST, "/v1/users".into(), new_user("owner")),
                (Method::PATCH, format!("/v1/users/{}", self.fresh_member().await), Some(json!({"role": "owner"}))),
            ],
            Permission::ReadContacts => vec![
                (Method::GET, "/v1/contacts".into(), None),
                (Method::GET, format!("/v1/contacts/{}", self.contact), None),
            ],
            Permission::WriteContacts => vec![
                (Method::POST, "/v1/contacts".into(), Some(json!({"name": "N", "email": "n@alpha.io"}))),
                (Method::PATCH, format!("/v1/contacts/{}", self.contact), Some(json!({"phone": "+1 555 0100"}))),
                (Method::DELETE, format!("/v1/contacts/{}", self.fresh_contact().await), None),
            ],
            Permission::ReadOrganizations => vec![
                (Method::GET, "/v1/organizations".into(), None),
                (Method::GET, format!("/v1/organizations/{}", self.organization), None),
            ],
            Permission::WriteOrganizations => vec![
                (Method::POST, "/v1/organizations".into(), Some(json!({"name": "O"}))),
                (Method::PATCH, format!("/v1/organizations/{}", self.organization), Some(json!({"domain": "o.io"}))),
                (
                    Method::DELETE,
                    format!("/v1/organizations/{}", self.post("/v1/organizations", json!({"name": "Gone"})).await),
                    None,
                ),
            ],
            Permission::ReadDeals => {
                vec![(Method::GET, "/v1/deals".into(), None), (Method::GET, format!("/v1/deals/{}", self.deal), None)]
            }
            Permission::WriteDeals => vec![
                (Method::POST, "/v1/deals".into(), Some(deal.clone())),
                (Method::PATCH, format!("/v1/deals/{}", self.deal), Some(json!({"stage": "qualified"}))),
                (Method::DELETE, format!("/v1/deals/{}", self.post("/v1/deals", deal).await), None),
            ],
            Permission::ReadAuditLog => vec![
                (Method::GET, "/v1/audit-events".into(), None),
                (Method::GET, "/v1/audit-events/verify".into(), None),
                (Method::GET, "/v1/audit-events/export".into(), None),
                (Method::GET, "/v1/audit-events/checkpoints".into(), None),
            ],
            Permission::ManageWebhooks => {
                let hook = json!({"url": "http://127.0.0.1:9/hook", "events": ["contact.created"]});
                let id = self.post("/v1/webhooks", hook.clone()).await;
                vec![
                    (Method::GET, "/v1/webhooks".into(), None),
                    (Method::POST, "/v1/webhooks".into(), Some(hook)),
                    (Method::GET, format!("/v1/webhooks/{id}"), None),
                    (Method::PATCH, format!("/v1/webhooks/{id}"), Some(json!({"description": "d"}))),
                    (Method::POST, format!("/v1/webhooks/{id}/rotate-secret"), None),
                    (Method::GET, format!("/v1/webhooks/{id}/deliveries"), None),
                    (
                        Method::DELETE,
                        format!(
                            "/v1/webhooks/{}",
                            self.post("/v1/webhooks", json!({"url": "http://127.0.0.1:9/x", "events": ["*"]})).await
                        ),
                        None,
                    ),
                ]
            }
        })
    }
}

#[tokio::test]
async fn every_cell_of_the_permission_matrix_is_enforced_over_http() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("alpha").await;
    // ~150 requests in a few seconds: the free plan's rate limit would answer 429 part-way.
    sqlx::query("UPDATE tenants SET plan = 'enterprise' WHERE id = $1")
        .bind(tenant.id)
        .execute(&mut app.superuser_connection().await)
        .await
        .expect("plan");
    let owner = app.owner_token(&tenant).await;
    let mut w = World { app, tenant, owner, contact: String::new(), organization: String::new(), deal: String::new() };
    w.organization = w.post("/v1/organizations", json!({"name": "Acme"})).await;
    w.contact = w.post("/v1/contacts", json!({"name": "Ada", "email": "ada@alpha.io"})).await;
    w.deal =
        w.post("/v1/deals", json!({"title": "D", "contact_id": w.contact, "amount": "1", "currency": "EUR"})).await;
    let mut tokens = Vec::new();
    for role in Role::ALL {
        let token = match role {
            Role::Owner => w.owner.clone(),
            other => w.app.create_user(&w.tenant, other.as_str()).await.access_token,
        };
        tokens.push((role, token));
    }

    let mut untested = Vec::new();
    let mut cells = 0;
    for permission in Permission::ALL {
        for (role, token) in &tokens {
            let Some(requests) = w.requests(permission).await else {
                untested.push(permission);
                break;
            };
            cells += 1;
            for (method, path, body) in requests {
                let r = w.app.call_as(token, "alpha", method.clone(), &path, body).await;
                let cell = format!("{} × {}: {method} {path}", role.as_str(), permission.as_str());
                if role.can(permission) {
                    assert!(r.status.is_success(), "{cell} must be allowed, got {}: {}", r.status, r.body);
                } else {
                    assert_eq!(r.status, StatusCode::FORBIDDEN, "{cell} must be refused: {}", r.body);
                    r.assert_problem(StatusCode::FORBIDDEN, "forbidden");
                }
            }
        }
    }
    assert_eq!(untested, Vec::<Permission>::new(), "every permission has a route to test it on");
    assert_eq!(cells, Permission::ALL.len() * Role::ALL.len());
}

#[tokio::test]
async fn the_openapi_document_lists_the_new_routes_with_the_right_credentials() {
    let app = spawn_app().await;
    let spec = app.call(Method::GET, "/openapi.json", &[], None).await.body;
    let bearer = |path: &str, method: &str| {
        let operation = &spec["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} missing from the OpenAPI document");
        operation["security"].as_array().is_some_and(|s| !s.is_empty())
    };
    // Refresh and logout take the refresh token in the body: no bearer scheme on them.
    for (path, method) in [("/v1/auth/refresh", "post"), ("/v1/auth/logout", "post")] {
        assert!(!bearer(path, method), "{method} {path} must not ask for a bearer token");
    }
    let authenticated = [
        ("/v1/auth/logout-all", "post"),
        ("/v1/me/password", "post"),
        ("/v1/users", "get"),
        ("/v1/users", "post"),
        ("/v1/users/{id}", "patch"),
        ("/v1/users/{id}", "delete"),
        ("/v1/organizations", "get"),
        ("/v1/organizations/{id}", "patch"),
        ("/v1/deals", "post"),
        ("/v1/deals/{id}", "delete"),
    ];
    for (path, method) in authenticated {
        assert!(bearer(path, method), "{method} {path} must ask for a bearer token");
    }
}
