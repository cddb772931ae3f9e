//! The one error of docker's vocabulary: input refused, in a sentence that says what is
//! wrong and what to do. The CLI prints it; the Engine API answers it with 400.

use std::fmt::Display;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

pub type Result<T> = std::result::Result<T, Invalid>;

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Invalid(message.into())
    }
}

impl Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// `Invalid` from a format string, like `format!`.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::Invalid(format!($($arg)*)) };
}

/// Names where refused input was ("services.web.ports: ..."), for any error that can be
/// displayed.
pub trait At<T> {
    fn at(self, place: impl Display) -> Result<T>;
}

impl<T, E: Display> At<T> for std::result::Result<T, E> {
    fn at(self, place: impl Display) -> Result<T> {
        self.map_err(|e| Invalid(format!("{place}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_nest_outermost_first() {
        let inner: Result<()> = Err(invalid!("{:?} is not a port number", "x"));
        let outer = inner.at("ports[0]").at("services.web");
        assert_eq!(
            outer.unwrap_err().to_string(),
            "services.web: ports[0]: \"x\" is not a port number"
        );
    }
}
