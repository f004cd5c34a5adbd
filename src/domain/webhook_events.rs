//! The event types a webhook subscribes to. Every audited tenant table emits
//! `<resource>.created`, `<resource>.updated` and `<resource>.deleted` (sql/V25): the built-in
//! resources below, and each adopted table under its own name (`bar_projects.updated`). A
//! subscription names such types, `<resource>.*` for all three, or `*` for everything.

/// The built-in resources that emit events (the audit triggers' resource names).
pub const BUILT_IN_RESOURCES: &[&str] = &["contact", "deal", "organization", "user"];

const ACTIONS: &[&str] = &["created", "updated", "deleted", "*"];

/// A checked, de-duplicated list of event types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypes(Vec<String>);

impl EventTypes {
    /// Check `events` against the resources there are: the built-in ones and `adopted`.
    pub fn parse<'a>(events: &[String], adopted: impl Iterator<Item = &'a str>) -> Result<EventTypes, String> {
        if events.is_empty() || events.len() > 50 {
            return Err("events: between 1 and 50 event types".into());
        }
        let adopted: Vec<&str> = adopted.collect();
        let mut out: Vec<String> = Vec::with_capacity(events.len());
        for event in events {
            if event != "*" {
                let known = event.split_once('.').is_some_and(|(resource, action)| {
                    ACTIONS.contains(&action) && (BUILT_IN_RESOURCES.contains(&resource) || adopted.contains(&resource))
                });
                if !known {
                    let shown: String = event.chars().take(100).collect();
                    return Err(format!(
                        "{shown:?} is not an event type: use <resource>.created, <resource>.updated, \
                         <resource>.deleted, <resource>.* or *, where <resource> is one of {} or an adopted table",
                        BUILT_IN_RESOURCES.join(", ")
                    ));
                }
            }
            if !out.contains(event) {
                out.push(event.clone());
            }
        }
        Ok(EventTypes(out))
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(events: &[&str]) -> Result<Vec<String>, String> {
        let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        EventTypes::parse(&events, ["bar_projects"].into_iter()).map(EventTypes::into_vec)
    }

    #[test]
    fn built_in_and_adopted_resources_with_known_actions_only() {
        assert_eq!(
            parse(&["contact.created", "bar_projects.*", "contact.created"]).as_deref().ok(),
            Some(&["contact.created".to_string(), "bar_projects.*".to_string()][..])
        );
        assert!(parse(&["*"]).is_ok());
        assert!(parse(&["contact.create"]).is_err(), "the audit action, not the event type");
        assert!(parse(&["invoices.created"]).is_err(), "not adopted");
        assert!(parse(&["contact"]).is_err());
        assert!(parse(&[]).is_err());
    }
}
