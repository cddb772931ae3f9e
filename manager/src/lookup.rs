//! Finding an object by what a user typed, as the docker CLI resolves it.

use crate::error::ManagerError;

/// Finds one object the way the docker CLI does: by full ID, then by name, then by a
/// unique ID prefix. `not_found` is the message when nothing matches.
pub fn find_by<'a, T: Clone + 'a>(
    items: impl Iterator<Item = &'a T>,
    key: &str,
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
    not_found: String,
) -> Result<T, ManagerError> {
    let items: Vec<&T> = items.collect();
    if let Some(exact) = items.iter().find(|x| id(x) == key) {
        return Ok((*exact).clone());
    }
    let by_name: Vec<&T> = items.iter().copied().filter(|x| name(x) == key).collect();
    let by_prefix: Vec<&T> = items
        .iter()
        .copied()
        .filter(|x| !key.is_empty() && id(x).starts_with(key))
        .collect();
    match (by_name.as_slice(), by_prefix.as_slice()) {
        ([one], _) => Ok((*one).clone()),
        ([], [one]) => Ok((*one).clone()),
        ([], []) => Err(ManagerError::NotFound(not_found)),
        _ => Err(ManagerError::InvalidArgument(format!(
            "{key} is ambiguous ({} matches); use a longer ID",
            by_name.len().max(by_prefix.len())
        ))),
    }
}
