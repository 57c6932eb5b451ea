//! [`KindError`]: the shape of the errors at the service boundaries above the replica layer
//! (block devices, the node agent): a kind the caller acts on (an HTTP status, a retry), what
//! was being done, and the error underneath, kept as the source rather than flattened into
//! a string.

use std::error::Error;
use std::fmt;

/// Any error, as a source.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// An error of kind `K`: what was being done (`context`) and why (`source`).
#[derive(Debug)]
pub struct KindError<K> {
    kind: K,
    context: Option<String>,
    source: Option<BoxError>,
}

impl<K: Copy + fmt::Debug> KindError<K> {
    /// `context` went wrong, for no deeper reason.
    pub fn new(kind: K, context: impl Into<String>) -> Self {
        KindError {
            kind,
            context: Some(context.into()),
            source: None,
        }
    }

    /// `source` as an error of `kind`, with nothing to add.
    pub fn of(kind: K, source: impl Into<BoxError>) -> Self {
        KindError {
            kind,
            context: None,
            source: Some(source.into()),
        }
    }

    /// The same, caused by `source`.
    pub fn because(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// For `map_err`: `context` went wrong because of the error given.
    pub fn by<E: Into<BoxError>>(kind: K, context: impl Into<String>) -> impl FnOnce(E) -> Self {
        let e = Self::new(kind, context);
        move |source| e.because(source)
    }

    pub fn kind(&self) -> K {
        self.kind
    }
}

impl<K: fmt::Debug> fmt::Display for KindError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.context, &self.source) {
            (Some(context), Some(source)) => write!(f, "{context}: {source}"),
            (Some(context), None) => f.write_str(context),
            (None, Some(source)) => write!(f, "{source}"),
            (None, None) => write!(f, "{:?}", self.kind),
        }
    }
}

impl<K: fmt::Debug> Error for KindError<K> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Failed,
    }

    #[test]
    fn the_message_is_the_context_then_the_source_which_stays_reachable() {
        let io = std::io::Error::other("disk on fire");
        let e = KindError::by(Kind::Failed, "flushing /dev/loop0")(io);
        assert_eq!(e.kind(), Kind::Failed);
        assert_eq!(e.to_string(), "flushing /dev/loop0: disk on fire");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("disk on fire")
        );
        assert_eq!(
            KindError::new(Kind::Failed, "no device").to_string(),
            "no device"
        );
    }
}
