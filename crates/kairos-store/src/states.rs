//! State codes in SQL. Statements name states and sets of states (`{available}`,
//! `{unfinished}`, `{waiting}`, `{finished}`) and get them rendered from the codes and
//! sets beside the state machine (`JobState::code`, `JobState::UNFINISHED`, ...), so no
//! statement spells a state code and no backend can disagree with the core about them.
//! Only the migrations' partial indexes spell them out (DDL is history); a test checks
//! those against the same sets.
//!
//! `{is_unfinished}`, `{is_waiting}` and `{is_finished}` render the same sets as a
//! condition on `state` without an `IN` list ([`condition`]): a range where the codes
//! are one (`state < 4`), else equalities joined by `OR`. SQLite builds a temporary
//! b-tree for the `IN` list of a partial index's predicate on every row it writes, so
//! its partial indexes over job rows use these forms, and so must the statements that
//! are to use those indexes (the planner matches a predicate only to an identical term).

use kairos_core::JobState;

/// A set of states as SQL writes it: `(0, 1, 2, 3)`.
pub(crate) fn set(states: &[JobState]) -> String {
    let codes: Vec<String> = states.iter().map(|s| s.code().to_string()).collect();
    format!("({})", codes.join(", "))
}

/// A set of states as a condition on `state` without an `IN` list: `state < 4` or
/// `state >= 4` when its codes run from the lowest or to the highest code, else
/// `(state = 0 OR state = 3)`.
pub(crate) fn condition(states: &[JobState]) -> String {
    let mut codes: Vec<u8> = states.iter().map(|s| s.code()).collect();
    codes.sort_unstable();
    let all: Vec<u8> = JobState::ALL.iter().map(|s| s.code()).collect();
    let (lowest, highest) = (all.iter().min(), all.iter().max());
    let contiguous = codes.windows(2).all(|w| w[1] == w[0] + 1);
    match (codes.first(), codes.last()) {
        (Some(first), Some(last)) if contiguous && Some(first) == lowest => {
            format!("state < {}", last + 1)
        }
        (Some(first), Some(last)) if contiguous && Some(last) == highest => {
            format!("state >= {first}")
        }
        _ => {
            let eqs: Vec<String> = codes.iter().map(|c| format!("state = {c}")).collect();
            format!("({})", eqs.join(" OR "))
        }
    }
}

/// `sql` with every `{state}` and `{set}` placeholder replaced.
pub(crate) fn render(sql: &str) -> String {
    let mut out = sql
        .replace("{is_unfinished}", &condition(&JobState::UNFINISHED))
        .replace("{is_waiting}", &condition(&JobState::WAITING))
        .replace("{is_finished}", &condition(&JobState::FINISHED))
        .replace("{unfinished}", &set(&JobState::UNFINISHED))
        .replace("{waiting}", &set(&JobState::WAITING))
        .replace("{finished}", &set(&JobState::FINISHED));
    for s in JobState::ALL {
        out = out.replace(&format!("{{{}}}", s.as_str()), &s.code().to_string());
    }
    assert!(!out.contains('{'), "an unknown placeholder in {sql:?}");
    out
}

/// A statement with state placeholders, rendered once on first use.
macro_rules! statement {
    ($(#[$meta:meta])* $name:ident = $sql:expr) => {
        $(#[$meta])*
        pub(crate) static $name: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| $crate::states::render($sql));
    };
}
pub(crate) use statement;

/// Asserts that a backend's migrations spell the partial indexes' state sets as the core
/// has them (DDL is history, so it spells codes out), or the planner would not match them
/// to the statements that use them. `clauses`: each index and the clause (with
/// placeholders) its latest definition must hold.
#[cfg(test)]
pub(crate) fn assert_partial_indexes_use_core_sets(ddl: &str, clauses: &[(&str, &str)]) {
    for (index, clause) in clauses {
        let at = ddl.rfind(&format!("INDEX {index} ")).expect(index);
        let end = ddl[at..].find(';').unwrap() + at;
        assert!(
            ddl[at..end].contains(&render(clause)),
            "{index}: {}",
            &ddl[at..end]
        );
    }
}

/// The partial indexes over job rows, as the first migrations made them (`IN` lists).
#[cfg(test)]
pub(crate) const JOB_INDEXES: [(&str, &str); 7] = [
    ("jobs_lease", "WHERE state = {available}"),
    ("jobs_due", "WHERE state IN {waiting}"),
    ("jobs_expiry", "WHERE state = {running}"),
    ("jobs_dead", "WHERE state = {dead}"),
    ("jobs_unique", "state IN {unfinished}"),
    ("jobs_schedule_open", "state IN {unfinished}"),
    ("jobs_finished", "WHERE state IN {finished}"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_the_core_sets() {
        assert_eq!(
            render("state IN {unfinished} OR state IN {waiting} OR state = {dead}"),
            "state IN (0, 1, 2, 3) OR state IN (0, 3) OR state = 5"
        );
        assert_eq!(
            render("{is_unfinished} / {is_waiting} / {is_finished}"),
            "state < 4 / (state = 0 OR state = 3) / state >= 4"
        );
    }
}
